"""Test shards from a user's own list of normalized formulas, built by the stages' own functions.

With ``--images DIR`` the pictures are the user's too (screenshots, scans): line N's formula is
shown in ``DIR/N.png`` (or ``.jpg``, ``.jpeg``), normalized as ``predict`` normalizes a
screenshot (``pipeline.corpus.screenshot``), then cropped and sharded like our renders. Every
line is kept, repeats included (two pictures of one formula are two samples), and a line without
a usable picture is recorded with the reason.

``evaluate --formulas FILE`` must score a model on new data exactly as it was scored on its test
split: the same normalization and deduplication (step0), the model's own dpi and crop settings
(recorded in its bundle, not read from params.yaml), the same safety checks and failure
isolation (render), and the same accounting (shards), so every line of the file ends up either
scored or recorded with its reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from pipeline.config import CropSettings, RenderSettings, ShardSettings, SplitRatios
from pipeline.contracts import FORMULAS_SCHEMA, Vocab, normalize_formula
from pipeline.corpus import crop, lists, render, screenshot, shards, step0
from pipeline.model.predict import IMAGE_SUFFIXES, ImageError, load_gray

log = logging.getLogger("pipeline")

ALL_TEST = SplitRatios(train=0.0, validation=0.0, test=1.0)


@dataclass(frozen=True)
class ExternalData:
    shards: list[Path]
    lines: int
    blank: int
    duplicates: int
    rejected: list[dict]

    def as_report(self) -> dict:
        reasons: dict[str, int] = {}
        for row in self.rejected:
            reasons[row["reason"]] = reasons.get(row["reason"], 0) + 1
        return {
            "lines": self.lines,
            "blank": self.blank,
            "duplicates": self.duplicates,
            "rejected": len(self.rejected),
            "rejected_by_reason": dict(sorted(reasons.items())),
        }


def build_external_shards(
    formulas_file: Path,
    vocab: Vocab,
    render_settings: RenderSettings,
    crop_settings: CropSettings,
    max_tokens: int,
    work: Path,
) -> ExternalData:
    """Render, crop and shard every formula of the file as the test split, under ``work``."""
    if not formulas_file.is_file():
        raise SystemExit(f"evaluate: formulas file {formulas_file} does not exist")
    table, report = step0.build_table(step0.read_lines(formulas_file), ALL_TEST)
    if table.num_rows == 0:
        raise SystemExit(f"evaluate: {formulas_file} holds no formulas")
    items = list(zip(table["id"].to_pylist(), table["formula"].to_pylist(), strict=True))
    rendered = render.to_table(render.render_formulas(items, render_settings))
    cropped = crop.crop_table(rendered, crop_settings)
    chunk = work / "crop.parquet"
    pq.write_table(cropped, chunk)
    settings = ShardSettings(max_tokens=max_tokens)
    ledger, manifest, unscored = shards.build_shards(
        table, [chunk], vocab, settings, work / "shards"
    )
    rejected = [_line_rejection(row) for row in report.rejections] + unscored
    log.info(
        "evaluate: %s: %d lines, %d blank, %d duplicates, %d formulas, %d to score, %d rejected",
        formulas_file,
        report.lines,
        report.blank,
        report.duplicates,
        report.formulas,
        sum(ledger.kept.values()),
        len(rejected),
    )
    for row in rejected[:20]:
        log.info("evaluate: rejected %s (%s): %s", row["id"], row["reason"], row["detail"])
    paths = [work / "shards" / m["path"] for m in manifest if m["split"] == "test"]
    return ExternalData(paths, report.lines, report.blank, report.duplicates, rejected)


def build_image_shards(
    formulas_file: Path,
    images: Path,
    vocab: Vocab,
    train_dpi: int,
    crop_settings: CropSettings,
    max_tokens: int,
    work: Path,
) -> ExternalData:
    """Line N's formula with ``images/N.*`` as the test split, under ``work``."""
    for path, what in ((formulas_file, "formulas file"), (images, "images folder")):
        if not path.exists():
            raise SystemExit(f"evaluate: {what} {path} does not exist")
    ids, formulas, pages, rejected, blank = [], [], [], [], 0
    for number, line in enumerate(lists.read_lines(formulas_file), start=1):
        problem = lists.line_problem(line)
        formula = "" if problem else normalize_formula(line)
        if problem or not formula:
            blank += not problem
            if problem:
                rejected.append(
                    _line_rejection({"line": number, "reason": problem[0], "detail": problem[1]})
                )
            continue
        ids.append(f"line {number}")
        formulas.append(formula)
        pages.append(_page(images, number, train_dpi) | {"id": ids[-1]})
    if not ids:
        raise SystemExit(f"evaluate: {formulas_file} holds no formulas")
    table = pa.table(
        {"id": ids, "formula": formulas, "split": ["test"] * len(ids)}, schema=FORMULAS_SCHEMA
    )
    chunk = work / "crop.parquet"
    pq.write_table(crop.crop_table(pa.Table.from_pylist(pages), crop_settings), chunk)
    settings = ShardSettings(max_tokens=max_tokens)
    ledger, manifest, unscored = shards.build_shards(
        table, [chunk], vocab, settings, work / "shards"
    )
    rejected += unscored
    log.info(
        "evaluate: %s with %s: %d lines, %d blank, %d to score, %d rejected",
        formulas_file,
        images,
        number,
        blank,
        sum(ledger.kept.values()),
        len(rejected),
    )
    for row in rejected[:20]:
        log.info("evaluate: rejected %s (%s): %s", row["id"], row["reason"], row["detail"])
    paths = [work / "shards" / m["path"] for m in manifest if m["split"] == "test"]
    return ExternalData(paths, number, blank, 0, rejected)


def _page(images: Path, number: int, train_dpi: int) -> dict:
    """Line ``number``'s picture as a render result: normalized to the model's dpi, or failed
    with the reason (no picture, or one predict would refuse)."""
    found = [images / f"{number}{suffix}" for suffix in IMAGE_SUFFIXES]
    found = [path for path in found if path.is_file()]
    if not found:
        names = ", ".join(f"{number}{s}" for s in IMAGE_SUFFIXES)
        return _failed("no_image", f"none of {names} in {images}")
    try:
        gray = np.asarray(load_gray(found[0].read_bytes()))
    except ImageError as bad:
        return _failed("bad_image", f"{found[0].name}: {bad}")
    page = screenshot.normalize(gray, train_dpi).gray
    return {"status": "ok", "reason": None, "error": None, "png": _png(page)}


def _failed(reason: str, detail: str) -> dict:
    return {"status": "failed", "reason": reason, "error": detail, "png": None}


def _png(gray: np.ndarray) -> bytes:
    return crop.encode_png(Image.fromarray(gray, mode="L"))


def _line_rejection(row: dict) -> dict:
    """A line step0 refused, as a row of the rejected list (it never got a formula id)."""
    return {
        "id": f"line {row['line']}",
        "split": "test",
        "kind": "rejected",
        "reason": row["reason"],
        "detail": row["detail"],
    }
