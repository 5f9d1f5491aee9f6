"""Test shards from a user's own list of normalized formulas, built by the stages' own functions.

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

import pyarrow.parquet as pq

from pipeline.config import CropSettings, RenderSettings, ShardSettings, SplitRatios
from pipeline.contracts import Vocab
from pipeline.corpus import crop, render, shards, step0

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


def _line_rejection(row: dict) -> dict:
    """A line step0 refused, as a row of the rejected list (it never got a formula id)."""
    return {
        "id": f"line {row['line']}",
        "split": "test",
        "kind": "rejected",
        "reason": row["reason"],
        "detail": row["detail"],
    }
