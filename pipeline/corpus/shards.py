"""Shards stage: cropped images + formulas + vocab -> training-ready Parquet shards per split.

Also the pipeline's ledger: every formula step0 emitted must leave here as a shard row, a
recorded failure, or a filtered row with its reason, and the stage refuses to finish otherwise.
Chunks are streamed one at a time so memory stays flat however large the corpus grows.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import cli
from pipeline.config import ShardSettings
from pipeline.contracts import (
    REJECTED,
    REJECTED_SCHEMA,
    SHARD_SCHEMA,
    SPLITS,
    UNK_ID,
    Vocab,
    write_manifest,
)

READS = ("shards",)  # the params this stage reads (dvc.yaml lists the same)


@dataclass
class Ledger:
    """Where every formula went; ``check`` enforces in = kept + failed + filtered."""

    formulas_in: int = 0
    kept: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    filtered: Counter = field(default_factory=Counter)

    def check(self) -> None:
        out = sum(self.kept.values()) + sum(self.failed.values()) + sum(self.filtered.values())
        if out != self.formulas_in:
            raise RuntimeError(f"accounting broken: {self.formulas_in} formulas in, {out} out")

    def as_report(self) -> dict:
        return {
            "formulas_in": self.formulas_in,
            "rows": sum(self.kept.values()),
            "rows_by_split": {s: self.kept[s] for s in SPLITS},
            "failed": sum(self.failed.values()),
            "failed_by_reason": dict(sorted(self.failed.items())),
            "filtered": sum(self.filtered.values()),
            "filtered_by_reason": dict(sorted(self.filtered.items())),
        }


class ShardWriter:
    """Rolls over to a new file every ``rows_per_shard`` rows and records each in the manifest."""

    def __init__(self, out_dir: Path, split: str, rows_per_shard: int) -> None:
        self.out_dir, self.split, self.limit = out_dir, split, rows_per_shard
        self.buffer: list[dict] = []
        self.manifest: list[dict] = []

    def add(self, row: dict) -> None:
        self.buffer.append(row)
        if len(self.buffer) >= self.limit:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        path = self.out_dir / f"{self.split}-{len(self.manifest):04d}.parquet"
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pylist(self.buffer, schema=SHARD_SCHEMA), sink)
        data = sink.getvalue().to_pybytes()
        path.write_bytes(data)  # hashed in memory: no second read of what we just wrote
        digest = hashlib.sha256(data).hexdigest()
        self.manifest.append(
            {"path": path.name, "split": self.split, "rows": len(self.buffer), "sha256": digest}
        )
        self.buffer = []


def filter_reason(
    row: dict, formula: str, tokens: list[int], settings: ShardSettings
) -> str | None:
    """Why a rendered formula stays out of the shards, or None; checked in this order."""
    if len(tokens) > settings.max_tokens:
        return "too_many_tokens"
    if row["bucket"] is None or row["bucket"] < 0:
        return "image_too_large"
    if settings.drop_unknown and UNK_ID in tokens:
        return "unknown_token"
    if settings.drop_tokens and not set(settings.drop_tokens).isdisjoint(formula.split()):
        return "dropped_token"
    return None


class ShardBuilder:
    """Routes cropped rows to shard writers or to the rejected list, keeping the ledger."""

    def __init__(self, formulas: pa.Table, vocab: Vocab, settings: ShardSettings, out: Path):
        columns = [formulas.column(c).to_pylist() for c in ("id", "formula", "split")]
        self.lookup = {i: (f, s) for i, f, s in zip(*columns, strict=True)}
        self.vocab, self.settings = vocab, settings
        self.ledger = Ledger(formulas_in=len(self.lookup))
        self.writers = {s: ShardWriter(out, s, settings.rows_per_shard) for s in SPLITS}
        self.rejected: list[dict] = []
        self.seen: set[str] = set()

    def add_chunk(self, chunk: Path) -> None:
        for batch in pq.ParquetFile(chunk).iter_batches(batch_size=2048):
            for row in batch.to_pylist():
                self.route(row, chunk)

    def route(self, row: dict, chunk: Path) -> None:
        row_id = row["id"]
        if row_id not in self.lookup:
            raise RuntimeError(f"{chunk}: id {row_id} is not in the step0 table (stale chunk?)")
        if row_id in self.seen:
            raise RuntimeError(f"{chunk}: id {row_id} appears in more than one row")
        self.seen.add(row_id)
        formula, split = self.lookup[row_id]
        if row["status"] != "ok":
            self.ledger.failed[row["reason"]] += 1
            self.rejected.append(_rejection(row_id, split, "failed", row["reason"], row["error"]))
            return
        tokens = self.vocab.encode(formula)
        reason = filter_reason(row, formula, tokens, self.settings)
        if reason:
            self.ledger.filtered[reason] += 1
            detail = f"{len(tokens)} tokens, image {row['height']}x{row['width']}"
            self.rejected.append(_rejection(row_id, split, "filtered", reason, detail))
            return
        self.ledger.kept[split] += 1
        self.writers[split].add(
            {k: row[k] for k in ("id", "png", "height", "width", "bucket")}
            | {"tokens": tokens, "formula": formula}
        )

    def finish(self) -> list[dict]:
        """Flush the writers, prove the accounting, and return the manifest."""
        missing = [i for i in self.lookup if i not in self.seen]
        if missing:
            raise RuntimeError(
                f"{len(missing)} formulas never reached the crop chunks, e.g. id {missing[0]}"
            )
        for writer in self.writers.values():
            writer.flush()
        self.ledger.check()
        return [m for w in self.writers.values() for m in w.manifest]


def build_shards(
    formulas: pa.Table,
    crop_chunks: list[Path],
    vocab: Vocab,
    settings: ShardSettings,
    out_dir: Path,
) -> tuple[Ledger, list[dict], list[dict]]:
    """Write shards; return the ledger, the manifest and the rejected rows."""
    out_dir.mkdir(parents=True, exist_ok=True)
    builder = ShardBuilder(formulas, vocab, settings, out_dir)
    for chunk in crop_chunks:
        builder.add_chunk(chunk)
    manifest = builder.finish()
    return builder.ledger, manifest, builder.rejected


def _rejection(row_id: str, split: str, kind: str, reason: str, detail: str | None) -> dict:
    return {"id": row_id, "split": split, "kind": kind, "reason": reason, "detail": detail}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline shards", description=__doc__)
    cli.add_params_args(parser)
    parser.add_argument("--formulas", type=Path, required=True, help="step0 Parquet table")
    parser.add_argument("--crop", type=Path, nargs="+", required=True, help="crop chunk files")
    parser.add_argument("--vocab", type=Path, required=True, help="vocabulary JSON")
    parser.add_argument("--out", type=Path, required=True, help="directory for the shards")
    parser.add_argument("--report", type=Path, required=True, help="JSON data report (metrics)")
    args = parser.parse_args(argv)
    settings = cli.read_params(args, READS).shards
    ledger, manifest, rejected = build_shards(
        pq.read_table(args.formulas), sorted(args.crop), Vocab.load(args.vocab), settings, args.out
    )
    pq.write_table(pa.Table.from_pylist(rejected, schema=REJECTED_SCHEMA), args.out / REJECTED)
    write_manifest(args.out, manifest)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(ledger.as_report(), indent=2) + "\n")
    cli.setup_logging().info(
        "shards: %d formulas in, %d rows out %s, %d failed %s, %d filtered %s, %d shard files",
        ledger.formulas_in,
        sum(ledger.kept.values()),
        dict(ledger.kept),
        sum(ledger.failed.values()),
        dict(ledger.failed),
        sum(ledger.filtered.values()),
        dict(ledger.filtered),
        len(manifest),
    )
    return 0
