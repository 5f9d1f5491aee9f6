"""Static HTML report of one evaluation: what a researcher opens after the evaluate stage.

One self-contained index.html (inline CSS and SVG, no scripts, nothing fetched from the network)
plus the image files it shows, so the folder can be copied, archived or opened offline. The same
inputs always give the same bytes, so a report can be diffed or tracked by DVC.
"""

from __future__ import annotations

import csv
import difflib
import html
import math
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

import pyarrow as pa

from pipeline.evaluation.heatmaps import safe_filename

REQUIRED_COLUMNS = ("id", "target", "prediction", "bleu", "edit_distance")
LENGTH_BIN = 20
IMAGES_DIR = "images"
HEATMAPS_DIR = "heatmaps"

Curve = Sequence[tuple[float, float]]
T = TypeVar("T")

_CSS = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
h1, h2 { font-weight: 600; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 0.5em 1.5em 1em 0; }
td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.tables { display: flex; flex-wrap: wrap; align-items: flex-start; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; }
.sample { border: 1px solid #ccc; border-radius: 4px; padding: 0.5em; margin: 0.7em 0; }
.sample .meta { font-size: 90%; color: #555; margin-bottom: 0.3em; }
.pics { display: flex; gap: 1em; align-items: flex-start; flex-wrap: wrap; }
.pics figure { margin: 0; }
.pics figcaption { font-size: 80%; color: #666; }
.pics img { max-width: 480px; border: 1px solid #eee; background: #fff; }
.tokens { font-family: monospace; margin: 0.2em 0; line-height: 1.7; }
.tokens .label { display: inline-block; width: 6em; color: #666; }
.tokens span.t { padding: 0 1px; }
.del { background: #f8c4c4; text-decoration: line-through; }
.ins { background: #bfe8c0; }
.sub { background: #fde39a; }
.error { background: #fff0f0; color: #900; white-space: pre-wrap; max-width: 480px;
         max-height: 10em; overflow: auto; font-size: 80%; }
.missing { color: #999; font-style: italic; }
.heatmap img { max-width: 100%; border: 1px solid #ddd; }
svg text { font-family: sans-serif; font-size: 11px; }
"""


@dataclass(frozen=True)
class _Sample:
    """One predictions row, with the optional columns as None when absent."""

    id: str
    target: str
    prediction: str
    bleu: float | None
    edit_distance: float | None
    extra: dict


def write_report(
    out_dir: Path,
    metrics: dict,
    predictions: pa.Table,
    images: Mapping[str, tuple[bytes | None, bytes | None]],
    curves: Mapping[str, Curve],
    heatmaps: Sequence[Path] = (),
    gallery_size: int = 24,
    worst_size: int = 20,
) -> Path:
    """Write out_dir/index.html and the images it shows; returns the index.html path.

    images: id -> (gold PNG bytes, rendered prediction PNG bytes), either may be None.
    curves: name -> [(step, value), ...]. heatmaps: PNG files; those outside out_dir are copied
    into out_dir/heatmaps so that the folder stands alone.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    samples = _samples(predictions)
    gallery = spread(samples, gallery_size)
    worst = _worst(samples, worst_size)
    pictures = _write_images(out_dir, [*gallery, *worst], images)
    body = [
        "<h1>Evaluation report</h1>",
        _nav(),
        _section("metrics", "Headline metrics", _metrics_html(metrics)),
        _section("curves", "Learning curves", _curves_html(curves)),
        _section("lengths", "BLEU by target length", _lengths_html(samples)),
        _section(
            "gallery",
            f"Gallery ({len(gallery)} of {len(samples)} samples, evenly spread by id)",
            _legend() + _samples_html(gallery, pictures),
        ),
        _section(
            "worst",
            f"Worst {len(worst)} by edit distance",
            _legend() + _samples_html(worst, pictures),
        ),
        _section("heatmaps", "Attention heatmaps", _heatmaps_html(out_dir, heatmaps)),
    ]
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        "<title>Evaluation report</title>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def read_dvclive_curves(plots_dir: Path) -> dict[str, list[tuple[float, float]]]:
    """name -> [(step, value)] sorted by step, from dvclive's plots/metrics/**/*.tsv.

    plots_dir is dvclive's plots folder; the dvclive folder above it is accepted too. The name
    is the file's path below metrics without ".tsv" (e.g. "train/loss"). Rows that do not
    parse are skipped: a run killed mid-write leaves a torn last line.
    """
    plots_dir = Path(plots_dir)
    root = plots_dir / "metrics"
    if not root.is_dir() and (plots_dir / "plots" / "metrics").is_dir():
        root = plots_dir / "plots" / "metrics"
    if not root.is_dir():
        return {}
    curves = {}
    for path in sorted(root.rglob("*.tsv")):
        name = path.relative_to(root).with_suffix("").as_posix()
        curves[name] = _read_tsv(path)
    return curves


def _read_tsv(path: Path) -> list[tuple[float, float]]:
    """(step, value) pairs of one dvclive metric file; its value column is named after it."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        fields = reader.fieldnames or []
        others = [f for f in fields if f not in ("step", "timestamp")]
        column = path.stem if path.stem in fields else (others[-1] if others else None)
        if "step" not in fields or column is None:
            return []
        points = []
        for row in reader:
            try:
                points.append((float(row["step"]), float(row[column])))
            except (TypeError, ValueError):
                continue
    return sorted(points, key=lambda p: p[0])


# -- choosing rows --------------------------------------------------------------------------
def _samples(table: pa.Table) -> list[_Sample]:
    """The rows sorted by id, so every later choice is independent of the table's order."""
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"predictions table lacks columns {missing}")
    rows = []
    for row in table.to_pylist():
        extra = {k: v for k, v in row.items() if k not in REQUIRED_COLUMNS}
        rows.append(
            _Sample(
                id=str(row["id"]),
                target=row["target"] or "",
                prediction=row["prediction"] or "",
                bleu=_finite(row["bleu"]),
                edit_distance=_finite(row["edit_distance"]),
                extra=extra,
            )
        )
    return sorted(rows, key=lambda s: s.id)


def _finite(value) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def spread(items: Sequence[T], size: int) -> list[T]:
    """``size`` items evenly spaced through the sequence, always including the first and the
    last: a deterministic, unbiased sample of a sorted list."""
    n = len(items)
    if size <= 0 or n == 0:
        return []
    if n <= size:
        return list(items)
    if size == 1:
        return [items[0]]
    return [items[i * (n - 1) // (size - 1)] for i in range(size)]


def _worst(samples: list[_Sample], size: int) -> list[_Sample]:
    """Highest edit distance first, ties by id; rows without a distance are never 'worst'."""
    scored = [s for s in samples if s.edit_distance is not None]
    scored.sort(key=lambda s: (-s.edit_distance, s.id))
    return scored[: max(size, 0)]


# -- files ----------------------------------------------------------------------------------
def _write_images(
    out_dir: Path,
    shown: list[_Sample],
    images: Mapping[str, tuple[bytes | None, bytes | None]],
) -> dict[str, tuple[str | None, str | None]]:
    """Write the gold/prediction PNGs of the shown samples; id -> relative links (or None)."""
    folder = out_dir / IMAGES_DIR
    links: dict[str, tuple[str | None, str | None]] = {}
    for sample in shown:
        if sample.id in links:
            continue
        gold, rendered = images.get(sample.id, (None, None))
        stem = safe_filename(sample.id)
        links[sample.id] = (
            _write_png(folder, f"{stem}.gold.png", gold),
            _write_png(folder, f"{stem}.pred.png", rendered),
        )
    return links


def _write_png(folder: Path, name: str, data: bytes | None) -> str | None:
    if not data:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    return f"{IMAGES_DIR}/{name}"


def _heatmap_links(out_dir: Path, heatmaps: Sequence[Path]) -> list[tuple[str, str | None]]:
    """(shown name, relative link or None when the file is missing) for each heatmap."""
    root = out_dir.resolve()
    links: list[tuple[str, str | None]] = []
    copied: set[str] = set()
    for given in heatmaps:
        path = Path(given)
        if not path.is_file():
            links.append((path.name, None))
            continue
        resolved = path.resolve()
        if resolved.is_relative_to(root):
            links.append((path.name, resolved.relative_to(root).as_posix()))
            continue
        name = _unique_name(path.name, copied)
        target = out_dir / HEATMAPS_DIR / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(resolved, target)
        links.append((path.name, f"{HEATMAPS_DIR}/{name}"))
    return links


def _unique_name(name: str, taken: set[str]) -> str:
    """name, or name with a counter before the suffix if an earlier copy already took it."""
    candidate, stem, suffix, k = name, Path(name).stem, Path(name).suffix, 1
    while candidate in taken:
        candidate = f"{stem}-{k}{suffix}"
        k += 1
    taken.add(candidate)
    return candidate


# -- HTML pieces ----------------------------------------------------------------------------
def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _href(relative: str) -> str:
    """A relative file link, percent-encoded, then escaped for an attribute."""
    return _esc(quote(relative))


def _fmt(value: object) -> str:
    """A metric value as text: floats to 4 places, booleans as yes/no, missing as a dash."""
    if value is None:
        return "\u2014"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else str(value)
    return str(value)


def _section(anchor: str, title: str, content: str) -> str:
    return f'<section id="{anchor}">\n<h2>{_esc(title)}</h2>\n{content}\n</section>'


def _nav() -> str:
    parts = [
        ("metrics", "Metrics"),
        ("curves", "Curves"),
        ("lengths", "By length"),
        ("gallery", "Gallery"),
        ("worst", "Worst"),
        ("heatmaps", "Heatmaps"),
    ]
    return "<nav>" + "".join(f'<a href="#{a}">{t}</a>' for a, t in parts) + "</nav>"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain table; numeric cells are right-aligned so that digits line up."""
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    lines = [f"<table><tr>{head}</tr>"]
    for row in rows:
        cells = "".join(
            f'<td class="num">{_esc(_fmt(v))}</td>'
            if isinstance(v, int | float) and not isinstance(v, bool)
            else f"<td>{_esc(_fmt(v))}</td>"
            for v in row
        )
        lines.append(f"<tr>{cells}</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def _metrics_html(metrics: Mapping) -> str:
    """Top-level scalars in one table, with any nested dict made mostly of the same keys (such
    as the greedy scores next to the beam ones) as an extra column; other nested dicts, such
    as the visual scores, get a table of their own, again with those columns side by side."""
    scalars = {k: v for k, v in metrics.items() if not isinstance(v, Mapping)}
    nested = {k: v for k, v in metrics.items() if isinstance(v, Mapping)}
    beside = {k: v for k, v in nested.items() if 2 * len(set(v) & set(scalars)) > len(v)}
    alone = [k for k in nested if k not in beside]
    if not scalars and not nested:
        return '<p class="missing">No metrics.</p>'
    columns = {str(metrics.get("decoding", "value")): metrics} | beside
    tables = [_side_by_side("metric", columns, skip_nested=True)] if scalars else []
    for name in alone:
        parts = {c: d[name] for c, d in columns.items() if isinstance(d.get(name), Mapping)}
        tables.append(_side_by_side(name, parts, skip_nested=False))
    return '<div class="tables">' + "\n".join(tables) + "</div>"


def _side_by_side(title: str, columns: Mapping[str, Mapping], skip_nested: bool) -> str:
    """One row per key found in any column; nested dicts are skipped where they have tables of
    their own, and shown as text where they do not."""
    keys = [
        k
        for d in columns.values()
        for k, v in d.items()
        if not (skip_nested and isinstance(v, Mapping))
    ]
    rows = [[k, *(_scalar(d.get(k)) for d in columns.values())] for k in dict.fromkeys(keys)]
    return _table([title, *columns], rows)


def _scalar(value: object) -> object:
    """Values too deep for a cell (dicts, lists) are shown as their text."""
    return value if value is None or isinstance(value, int | float | str | bool) else str(value)


def _legend() -> str:
    return (
        '<p class="tokens">diff against the target: '
        '<span class="t del">deleted</span> <span class="t ins">inserted</span> '
        '<span class="t sub">substituted</span></p>'
    )


def token_diff(target: str, prediction: str) -> tuple[str, str]:
    """Both token lines as HTML, the differences marked del / ins / sub.

    A token only in the target is 'del' (the model dropped it), one only in the prediction
    is 'ins', and a replaced run is 'sub' on both lines, so the eye can pair them.
    """
    gold, guess = target.split(), prediction.split()
    matcher = difflib.SequenceMatcher(a=gold, b=guess, autojunk=False)
    left: list[str] = []
    right: list[str] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        kind = {"equal": "", "delete": "del", "insert": "ins", "replace": "sub"}[op]
        left.extend(_token(t, "" if op == "equal" else kind) for t in gold[i1:i2])
        right.extend(_token(t, "" if op == "equal" else kind) for t in guess[j1:j2])
    return " ".join(left), " ".join(right)


def _token(text: str, kind: str) -> str:
    cls = f"t {kind}" if kind else "t"
    return f'<span class="{cls}">{_esc(text)}</span>'


def _samples_html(samples: list[_Sample], pictures: Mapping) -> str:
    if not samples:
        return '<p class="missing">No samples.</p>'
    return "\n".join(_sample_html(s, pictures.get(s.id, (None, None))) for s in samples)


def _sample_html(sample: _Sample, links: tuple[str | None, str | None]) -> str:
    """One sample: its scores, the two images side by side, and the diffed token lines."""
    gold_link, pred_link = links
    error = sample.extra.get("render_error")
    gold = _figure(gold_link, "gold", "no gold image")
    if pred_link:
        pred = _figure(pred_link, "prediction, rendered", "")
    elif error:
        pred = (
            f'<figure><pre class="error">{_esc(error)}</pre>'
            "<figcaption>render error</figcaption></figure>"
        )
    else:
        pred = _figure(None, "prediction", "prediction not rendered")
    target_html, pred_html = token_diff(sample.target, sample.prediction)
    lines = [
        _token_line("target", target_html),
        _token_line("prediction", pred_html),
    ]
    greedy = sample.extra.get("greedy_prediction")
    if greedy is not None and greedy.split() != sample.prediction.split():
        lines.append(_token_line("greedy", token_diff(sample.target, greedy)[1]))
    return (
        '<div class="sample">'
        f'<div class="meta">{_meta(sample)}</div>'
        f'<div class="pics">{gold}{pred}</div>' + "".join(lines) + "</div>"
    )


def _meta(sample: _Sample) -> str:
    parts = [f"<b>{_esc(sample.id)}</b>", f"BLEU {_fmt(sample.bleu)}"]
    parts.append(f"edit distance {_fmt(sample.edit_distance)}")
    for key in ("compiled", "image_match", "image_match_ws", "image_edit_distance"):
        if key in sample.extra:
            parts.append(f"{key.replace('_', ' ')} {_esc(_fmt(sample.extra[key]))}")
    return " &middot; ".join(parts)


def _figure(link: str | None, caption: str, missing: str) -> str:
    if link is None:
        return f'<figure><p class="missing">{_esc(missing)}</p></figure>'
    return (
        f'<figure><img src="{_href(link)}" alt="{_esc(caption)}">'
        f"<figcaption>{_esc(caption)}</figcaption></figure>"
    )


def _token_line(label: str, content: str) -> str:
    return f'<div class="tokens"><span class="label">{_esc(label)}</span>{content}</div>'


# -- by length ------------------------------------------------------------------------------
def length_bin(n_tokens: int) -> int:
    """Bin k holds targets of 20k+1 .. 20k+20 tokens; bin 0 also holds the empty target."""
    return max(0, (n_tokens - 1) // LENGTH_BIN)


def bin_label(k: int) -> str:
    low = 0 if k == 0 else k * LENGTH_BIN + 1
    return f"{low}-{(k + 1) * LENGTH_BIN}"


def length_bins(predictions: pa.Table) -> list[dict]:
    """Per target-length bin: bin, samples, bleu (mean), exact_match (share), edit_distance.

    From the shortest bin to the longest seen; empty bins in between are kept so that the
    chart's x axis stays linear.
    """
    return _length_rows(_samples(predictions))


def _length_rows(samples: Sequence[_Sample]) -> list[dict]:
    if not samples:
        return []
    bins: dict[int, list[_Sample]] = {}
    for s in samples:
        bins.setdefault(length_bin(len(s.target.split())), []).append(s)
    rows = []
    for k in range(max(bins) + 1):
        members = bins.get(k, [])
        rows.append(
            {
                "bin": bin_label(k),
                "samples": len(members),
                "bleu": _mean([s.bleu for s in members]),
                "exact_match": _mean(
                    [float(s.target.split() == s.prediction.split()) for s in members]
                ),
                "edit_distance": _mean([s.edit_distance for s in members]),
            }
        )
    return rows


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _lengths_html(samples: Sequence[_Sample]) -> str:
    rows = _length_rows(samples)
    if not rows:
        return '<p class="missing">No samples.</p>'
    table = _table(
        ["target tokens", "samples", "mean BLEU", "exact match", "mean edit distance"],
        [[r["bin"], r["samples"], r["bleu"], r["exact_match"], r["edit_distance"]] for r in rows],
    )
    return f'<div class="tables">{table}\n{_bar_chart(rows)}</div>'


# -- SVG ------------------------------------------------------------------------------------
_W, _H, _ML, _MR, _MT, _MB = 380, 210, 52, 12, 24, 34


def _bar_chart(rows: Sequence[dict]) -> str:
    """Mean BLEU per length bin on a fixed 0..1 axis, the sample count above each bar."""
    # Wide enough that the bin labels under the bars never run into each other.
    width = max(_W, _ML + _MR + 52 * len(rows))
    inner_w, inner_h = width - _ML - _MR, _H - _MT - _MB
    slot = inner_w / len(rows)
    parts = [_svg_open("mean BLEU by target length", width), _axes(inner_w, inner_h)]
    parts.append(_y_labels("0", "1"))
    for i, row in enumerate(rows):
        x = _ML + i * slot
        if row["bleu"] is not None:
            h = inner_h * min(max(row["bleu"], 0.0), 1.0)
            parts.append(
                f'<rect x="{x + slot * 0.15:.1f}" y="{_MT + inner_h - h:.1f}" '
                f'width="{slot * 0.7:.1f}" height="{h:.1f}" fill="#4a7fb5">'
                f"<title>{_esc(row['bin'])}: BLEU {_fmt(row['bleu'])}, n={row['samples']}"
                "</title></rect>"
            )
        parts.append(
            _text(x + slot / 2, _MT + inner_h + 14, row["bin"], "middle", size=9)
            + _text(x + slot / 2, _MT - 6, f"n={row['samples']}", "middle", size=9)
        )
    parts.append("</svg>")
    return "".join(parts)


def _curves_html(curves: Mapping[str, Curve]) -> str:
    if not curves:
        return '<p class="missing">No learning curves.</p>'
    charts = [_line_chart(name, curves[name]) for name in sorted(curves)]
    return '<div class="charts">' + "\n".join(charts) + "</div>"


def _line_chart(name: str, points: Curve) -> str:
    """One curve: axes, the line, and the step and value ranges written at the axis ends."""
    clean = [(float(x), float(y)) for x, y in points if math.isfinite(x) and math.isfinite(y)]
    inner_w, inner_h = _W - _ML - _MR, _H - _MT - _MB
    parts = [_svg_open(name), _text(_W / 2, 15, name, "middle", size=12)]
    parts.append(_axes(inner_w, inner_h))
    if not clean:
        parts.append(_text(_W / 2, _H / 2, "no points", "middle"))
        return "".join(parts) + "</svg>"
    xs, ys = [p[0] for p in clean], [p[1] for p in clean]
    x0, x1 = _span(min(xs), max(xs))
    y0, y1 = _span(min(ys), max(ys))

    def at(x: float, y: float) -> str:
        px = _ML + (x - x0) / (x1 - x0) * inner_w
        py = _MT + inner_h - (y - y0) / (y1 - y0) * inner_h
        return f"{px:.1f},{py:.1f}"

    coords = " ".join(at(x, y) for x, y in clean)
    parts.append(f'<polyline fill="none" stroke="#c0392b" stroke-width="1.5" points="{coords}"/>')
    if len(clean) == 1:
        cx, cy = at(*clean[0]).split(",")
        parts.append(f'<circle cx="{cx}" cy="{cy}" r="3" fill="#c0392b"/>')
    parts.append(_y_labels(_num(min(ys)), _num(max(ys))))
    parts.append(_text(_ML, _H - 8, f"step {_num(min(xs))}", "start"))
    parts.append(_text(_W - _MR, _H - 8, f"step {_num(max(xs))}", "end"))
    last = clean[-1][1]
    parts.append(_text(_W - _MR, _MT + 10, f"last {_num(last)}", "end", size=10))
    return "".join(parts) + "</svg>"


def _span(low: float, high: float) -> tuple[float, float]:
    """A non-empty range: a flat curve is drawn across the middle rather than dividing by 0."""
    if high > low:
        return low, high
    pad = abs(low) * 0.5 or 1.0
    return low - pad, high + pad


def _num(value: float) -> str:
    return f"{value:.4g}"


def _svg_open(title: str, width: int = _W) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{_H}" '
        f'viewBox="0 0 {width} {_H}" role="img" aria-label="{_esc(title)}">'
        f'<rect x="0" y="0" width="{width}" height="{_H}" fill="#fff" stroke="#ddd"/>'
    )


def _axes(inner_w: float, inner_h: float) -> str:
    bottom = _MT + inner_h
    return (
        f'<line x1="{_ML}" y1="{_MT}" x2="{_ML}" y2="{bottom}" stroke="#333"/>'
        f'<line x1="{_ML}" y1="{bottom}" x2="{_ML + inner_w}" y2="{bottom}" stroke="#333"/>'
    )


def _y_labels(low: str, high: str) -> str:
    bottom = _H - _MB
    return _text(_ML - 4, bottom, low, "end") + _text(_ML - 4, _MT + 8, high, "end")


def _text(x: float, y: float, text: str, anchor: str, size: int = 11) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}">'
        f"{_esc(text)}</text>"
    )


# -- heatmaps -------------------------------------------------------------------------------
def _heatmaps_html(out_dir: Path, heatmaps: Sequence[Path]) -> str:
    if not heatmaps:
        return '<p class="missing">No attention heatmaps.</p>'
    parts = []
    for name, link in _heatmap_links(out_dir, heatmaps):
        if link is None:
            parts.append(f'<p class="missing">missing file: {_esc(name)}</p>')
            continue
        parts.append(
            f'<div class="heatmap"><p><a href="{_href(link)}">{_esc(name)}</a></p>'
            f'<img src="{_href(link)}" alt="{_esc(name)}"></div>'
        )
    return "\n".join(parts)
