"""The static HTML report: self-contained links, escaping, diffs, length bins and curves."""

from __future__ import annotations

import io
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa
import pytest
from PIL import Image

from pipeline.evaluation import report

METRICS = {
    "samples": 4,
    "bleu": 0.81,
    "bleu_unsmoothed": 0.8,
    "edit_distance": 0.1,
    "exact_match": 0.3,
    "decoding": "beam",
    "beam_width": 5,
    "greedy": {"bleu": 0.78, "edit_distance": 0.12, "exact_match": 0.28},
    "visual": {"compile_rate": 0.97, "image_match": 0.5, "samples": 990},
}


class Links(HTMLParser):
    """Every src/href, every id, and every start tag of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href"):
                self.links.append(value)
            if name == "id":
                self.ids.add(value)


def parse(page: str) -> Links:
    parser = Links()
    parser.feed(page)
    parser.close()
    return parser


def png(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (30, 10), shade).save(buffer, format="PNG")
    return buffer.getvalue()


def minimal_table(n: int = 4) -> pa.Table:
    return pa.table(
        {
            "id": [f"id{i:03d}" for i in range(n)],
            "target": ["x + y"] * n,
            "prediction": ["x + y"] * (n // 2) + ["x - y"] * (n - n // 2),
            "bleu": [1.0] * (n // 2) + [0.3] * (n - n // 2),
            "edit_distance": [i / max(n, 1) for i in range(n)],
        }
    )


def full_table() -> pa.Table:
    return pa.table(
        {
            "id": ["a/1", "b<2>", "c&3"],
            "target": [r"\frac { a } { b }", "x < y & z", r"\alpha"],
            "prediction": [r"\frac { a } { c }", "x < y </script> <script> alert", ""],
            "bleu": [0.5, 0.2, 0.0],
            "edit_distance": [0.2, 1.0, 1.0],
            "greedy_prediction": [r"\frac { a }", "x < y & z", ""],
            "compiled": [True, False, False],
            "image_match": [0.0, None, None],
            "image_match_ws": [0.0, None, None],
            "image_edit_distance": [0.1, None, None],
            "render_error": [None, "! Missing $ inserted <&>", None],
        }
    )


def section(page: str, name: str) -> str:
    start = page.index(f'<section id="{name}">')
    return page[start : page.index("</section>", start)]


def shown_ids(html_part: str) -> list[str]:
    return re.findall(r'<div class="meta"><b>([^<]*)</b>', html_part)


@pytest.fixture
def written(tmp_path) -> Path:
    """A report with every optional part, including heatmaps inside and outside out_dir."""
    out = tmp_path / "report"
    inside = out / "strips" / "inside map.png"
    inside.parent.mkdir(parents=True)
    inside.write_bytes(png(50))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "a.png").write_bytes(png(60))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "a.png").write_bytes(png(70))  # same name, different file
    images = {"a/1": (png(200), png(150)), "b<2>": (png(200), None), "c&3": (None, None)}
    curves = {"train/loss": [(0, 3.0), (1, 2.0), (2, 1.5)], "val/bleu": [(0, 0.1)]}
    heatmaps = [inside, elsewhere / "a.png", tmp_path / "other" / "a.png"]
    return report.write_report(out, METRICS, full_table(), images, curves, heatmaps)


def test_every_link_resolves_to_a_file_inside_out_dir(written):
    page = written.read_text(encoding="utf-8")
    parsed = parse(page)
    root = written.parent.resolve()
    files = [link for link in parsed.links if not link.startswith("#")]
    assert len(files) >= 5  # gold and prediction images, and the heatmaps
    for link in parsed.links:
        if link.startswith("#"):
            assert link[1:] in parsed.ids
            continue
        assert "://" not in link and not link.startswith("/")
        target = (root / unquote(link)).resolve()
        assert target.is_relative_to(root) and target.is_file(), link
    assert not {"script", "link", "iframe"} & set(parsed.tags)


def test_images_are_written_for_shown_samples(written):
    out = written.parent
    page = written.read_text(encoding="utf-8")
    gold = [p for p in (out / "images").iterdir() if p.name.endswith(".gold.png")]
    preds = [p for p in (out / "images").iterdir() if p.name.endswith(".pred.png")]
    assert len(gold) == 2 and len(preds) == 1  # c&3 had no images at all
    assert preds[0].read_bytes() == png(150)
    assert "no gold image" in page and "prediction not rendered" in page


def test_outside_heatmaps_are_copied_and_inside_ones_referenced(written, tmp_path):
    out = written.parent
    assert sorted(p.name for p in (out / "heatmaps").iterdir()) == ["a-1.png", "a.png"]
    assert (out / "heatmaps" / "a.png").read_bytes() == png(60)
    assert (out / "heatmaps" / "a-1.png").read_bytes() == png(70)
    page = written.read_text(encoding="utf-8")
    assert 'src="strips/inside%20map.png"' in page
    assert str(tmp_path) not in page


def test_render_error_is_shown_when_the_prediction_did_not_compile(written):
    page = written.read_text(encoding="utf-8")
    assert '<pre class="error">! Missing $ inserted &lt;&amp;&gt;</pre>' in page


def test_formula_text_is_escaped(written):
    page = written.read_text(encoding="utf-8")
    assert "<script>" not in page and "</script>" not in page
    assert "&lt;script&gt;" in page and "&lt;/script&gt;" in page
    assert "<b>b&lt;2&gt;</b>" in page and "<b>c&amp;3</b>" in page
    assert '<span class="t">&amp;</span>' in page
    assert "\\frac" in page
    assert "script" not in parse(page).tags


def test_missing_heatmap_is_noted_not_linked(tmp_path):
    out = tmp_path / "r"
    index = report.write_report(out, {}, minimal_table(), {}, {}, [tmp_path / "gone.png"])
    page = index.read_text(encoding="utf-8")
    assert "missing file: gone.png" in page
    assert not [link for link in parse(page).links if not link.startswith("#")]


def test_token_diff_marks_insertions_deletions_and_substitutions():
    target, prediction = report.token_diff("a b c d", "a x c d e")
    assert re.findall(r'<span class="t sub">([^<]*)</span>', target) == ["b"]
    assert re.findall(r'<span class="t sub">([^<]*)</span>', prediction) == ["x"]
    assert re.findall(r'<span class="t ins">([^<]*)</span>', prediction) == ["e"]
    target, prediction = report.token_diff(r"\frac { a } { b }", r"\frac { a } b }")
    assert re.findall(r'<span class="t del">([^<]*)</span>', target) == ["{"]
    assert "del" not in prediction and "ins" not in target
    same, _ = report.token_diff("a  b", "a b")
    assert same == '<span class="t">a</span> <span class="t">b</span>'


def test_diff_lines_appear_in_the_report_with_greedy_when_it_differs(written):
    gallery = section(written.read_text(encoding="utf-8"), "gallery")
    assert '<span class="t sub">b</span>' in gallery and '<span class="t sub">c</span>' in gallery
    # Shown where greedy and beam disagree (a/1, b<2>), not where they agree (c&3).
    assert gallery.count('<span class="label">greedy</span>') == 2
    assert '<span class="label">greedy</span><span class="t">x</span>' in gallery
    assert '<span class="t del">\\alpha</span>' in gallery


def test_length_bins_count_every_row_once():
    lengths = [0, 1, 20, 21, 40, 41, 100]
    table = pa.table(
        {
            "id": [str(i) for i in range(len(lengths))],
            "target": [" ".join(["x"] * n) for n in lengths],
            "prediction": [" ".join(["x"] * n) for n in lengths[:3]] + [""] * 4,
            "bleu": [1.0, 1.0, 0.5, 0.2, 0.4, 0.0, None],
            "edit_distance": [0.0] * 3 + [1.0] * 4,
        }
    )
    rows = report.length_bins(table)
    assert [r["bin"] for r in rows] == ["0-20", "21-40", "41-60", "61-80", "81-100"]
    assert [r["samples"] for r in rows] == [3, 2, 1, 0, 1]
    assert sum(r["samples"] for r in rows) == len(lengths)
    assert rows[0]["bleu"] == pytest.approx(2.5 / 3) and rows[1]["bleu"] == pytest.approx(0.3)
    assert rows[0]["exact_match"] == 1.0 and rows[1]["exact_match"] == 0.0
    assert rows[3]["bleu"] is None and rows[4]["bleu"] is None  # empty bin, null bleu


def test_length_section_has_table_and_bar_chart(tmp_path):
    index = report.write_report(tmp_path, {}, minimal_table(6), {}, {})
    part = section(index.read_text(encoding="utf-8"), "lengths")
    assert "<td>0-20</td>" in part and "<svg" in part
    assert part.count("<rect") == 2  # background and one bar
    assert "n=6" in part and "0.6500" in part  # mean of three 1.0 and three 0.3


def test_dvclive_curves_are_read(tmp_path):
    metrics = tmp_path / "dvclive" / "plots" / "metrics"
    (metrics / "train").mkdir(parents=True)
    (metrics / "val").mkdir()
    (metrics / "train" / "loss.tsv").write_text("step\tloss\n0\t2.5\n1\t2.0\n2\t1.25\n")
    (metrics / "val" / "bleu.tsv").write_text("timestamp\tstep\tbleu\n9\t2\t0.3\n8\t1\t0.2\n7\t3\t")
    (metrics / "val" / "notes.txt").write_text("not a metric")
    expected = {
        "train/loss": [(0.0, 2.5), (1.0, 2.0), (2.0, 1.25)],
        "val/bleu": [(1.0, 0.2), (2.0, 0.3)],  # sorted by step; the torn last row is dropped
    }
    assert report.read_dvclive_curves(tmp_path / "dvclive" / "plots") == expected
    assert report.read_dvclive_curves(tmp_path / "dvclive") == expected
    assert report.read_dvclive_curves(tmp_path / "absent") == {}


def test_curves_are_drawn_as_inline_svg(written):
    part = section(written.read_text(encoding="utf-8"), "curves")
    assert part.count("<svg") == 2
    points = re.findall(r'<polyline[^>]*points="([^"]*)"', part)
    assert [len(p.split()) for p in points] == [3, 1]
    assert ">1.5</text>" in part and ">3</text>" in part  # min and max of train/loss
    assert ">step 0</text>" in part and ">step 2</text>" in part
    assert part.count("<circle") == 1  # the single-point curve is still visible


def test_minimal_table_and_empty_curves(tmp_path):
    index = report.write_report(tmp_path / "r", {"bleu": 0.5}, minimal_table(), {}, {})
    page = index.read_text(encoding="utf-8")
    assert "No learning curves." in page and "No attention heatmaps." in page
    assert len(shown_ids(section(page, "gallery"))) == 4
    assert not (tmp_path / "r" / "images").exists()


def test_empty_everything(tmp_path):
    empty = minimal_table(0)
    page = report.write_report(tmp_path, {}, empty, {}, {}).read_text(encoding="utf-8")
    assert "No metrics." in page and page.count("No samples.") == 3


def test_missing_required_column_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="edit_distance"):
        report.write_report(tmp_path, {}, minimal_table().drop(["edit_distance"]), {}, {})


def test_metrics_tables_put_greedy_beside_beam(written):
    part = section(written.read_text(encoding="utf-8"), "metrics")
    assert "<th>metric</th><th>beam</th><th>greedy</th>" in part
    assert '<tr><td>bleu</td><td class="num">0.8100</td><td class="num">0.7800</td></tr>' in part
    # visual shares only "samples" with the top level, so it keeps a table of its own, with a
    # column for each search that has visual scores (here only the headline one)
    assert "<tr><th>visual</th><th>beam</th></tr>" in part
    assert '<tr><td>samples</td><td class="num">990</td></tr>' in part


def test_metrics_without_optional_parts(tmp_path):
    metrics = {"bleu": 0.5, "note": "a < b", "visual": {}, "nested": {"deep": {"x": 1}}}
    page = report.write_report(tmp_path, metrics, minimal_table(), {}, {}).read_text()
    part = section(page, "metrics")
    assert "<th>value</th>" in part and "a &lt; b" in part
    assert "{&#x27;x&#x27;: 1}" in part


def test_gallery_is_an_even_spread_and_worst_are_worst(tmp_path):
    table = minimal_table(100)
    index = report.write_report(tmp_path, {}, table, {}, {}, gallery_size=5, worst_size=3)
    page = index.read_text(encoding="utf-8")
    assert shown_ids(section(page, "gallery")) == ["id000", "id024", "id049", "id074", "id099"]
    assert shown_ids(section(page, "worst")) == ["id099", "id098", "id097"]


def test_output_is_deterministic_and_independent_of_row_order(tmp_path):
    table = minimal_table(30)
    shuffled = table.take(list(range(29, -1, -1)))
    images = {f"id{i:03d}": (png(i), png(255 - i)) for i in range(30)}
    first = report.write_report(tmp_path / "a", METRICS, table, images, {"l": [(0, 1), (1, 0)]})
    second = report.write_report(tmp_path / "b", METRICS, shuffled, images, {"l": [(0, 1), (1, 0)]})
    assert first.read_bytes() == second.read_bytes()
    names_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*"))
    names_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*"))
    assert names_a == names_b


def test_nested_sections_get_a_column_per_search(tmp_path):
    scores = {"bleu": 0.3, "exact_match": 0.1, "edit_distance": 0.5}
    metrics = {
        "decoding": "beam5",
        **scores,
        "visual": {"image_match": 0.2},
        "greedy": {**scores, "bleu": 0.2, "visual": {"image_match": 0.1}},
    }
    page = report.write_report(tmp_path, metrics, minimal_table(), {}, {}).read_text()
    part = section(page, "metrics")
    assert "<tr><th>visual</th><th>beam5</th><th>greedy</th></tr>" in part
    row = '<tr><td>image_match</td><td class="num">0.2000</td><td class="num">0.1000</td></tr>'
    assert row in part
    assert "{" not in part  # no dict shown as text


def test_spread_is_even_deterministic_and_keeps_both_ends():
    ids = [f"{i:03d}" for i in range(100)]
    assert report.spread(ids, 4) == ["000", "033", "066", "099"]
    assert report.spread(ids[:3], 10) == ids[:3]
    assert report.spread(ids, 1) == ["000"] and report.spread(ids, 0) == []
