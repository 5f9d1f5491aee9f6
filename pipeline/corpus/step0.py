"""step0: normalized formula lists -> one Parquet table of unique formulas with ids and splits.

Input is either one list, split deterministically by a hash of each formula (so a formula keeps
its split when the list grows), or a directory holding explicit train/validation/test lists;
any list may be gzipped (``.gz``). With ``step0.raw`` the list is raw LaTeX, and step0 reads the
normalize stage's output instead. Ids are derived from content, so every later artifact can be
joined back to its formula.
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
from pipeline.config import SplitRatios
from pipeline.contracts import FORMULAS_SCHEMA, REJECTED_LINES_SCHEMA, SPLITS, normalize_formula
from pipeline.corpus.lists import check_sha256, line_problem, read_lines

READS = ("step0",)  # the params this stage reads (dvc.yaml lists the same)
# Accepted names of explicit split lists inside an input directory, per split (each may also
# be gzipped: the same name with .gz).
SPLIT_FILES = {
    "train": ("train.formulas.norm.txt", "train.txt"),
    "validation": (
        "validation.formulas.norm.txt",
        "val.formulas.norm.txt",
        "validation.txt",
        "val.txt",
    ),
    "test": ("test.formulas.norm.txt", "test.txt"),
}
# When one formula is listed in several explicit splits it is kept in the first of these, so
# evaluation data never leaks into training.
SPLIT_PRIORITY = ("test", "validation", "train")


@dataclass
class Step0Report:
    """Counts in and out, so nothing step0 drops goes unrecorded: every line is blank, a
    duplicate, rejected (its line and reason in ``rejections``) or a formula."""

    lines: int = 0
    blank: int = 0
    duplicates: int = 0
    cross_split_duplicates: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    formulas: int = 0
    by_split: dict[str, int] = field(default_factory=dict)
    rejections: list[dict] = field(default_factory=list)

    def counts(self) -> dict:
        """The report without the rejected lines themselves (those go to a table)."""
        return {k: v for k, v in self.__dict__.items() if k != "rejections"}

    def check(self) -> None:
        out = self.blank + self.duplicates + self.rejected + self.formulas
        if out != self.lines:
            raise RuntimeError(f"step0 accounting broken: {self.lines} lines in, {out} out")


def formula_id(formula: str) -> str:
    """A stable 16-hex-digit id from the formula's text."""
    return hashlib.sha1(formula.encode("utf-8")).hexdigest()[:16]


def hash_split(formula_id_: str, ratios: SplitRatios) -> str:
    """Deterministic split from the id: a formula's split never depends on its neighbours."""
    point = int(formula_id_[-8:], 16) / 2**32
    edge = 0.0
    for split in SPLITS:
        edge += getattr(ratios, split)
        if point < edge:
            return split
    return SPLITS[-1]


def locate_inputs(path: Path) -> dict[str, Path] | Path:
    """A file is one list to split by hash; a directory must hold all three split lists."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise SystemExit(f"step0: input {path} does not exist")
    found: dict[str, Path] = {}
    for split, names in SPLIT_FILES.items():
        hits = [path / n for name in names for n in (name, f"{name}.gz") if (path / n).is_file()]
        if not hits:
            looked = ", ".join(names)
            raise SystemExit(f"step0: {path} has no {split} list (looked for {looked}, or .gz)")
        found[split] = hits[0]
    return found


def build_table(
    lists: dict[str, list[str]] | list[str], ratios: SplitRatios
) -> tuple[pa.Table, Step0Report]:
    """Deduplicate and assign splits; ``lists`` is one list or explicit lists per split."""
    report = Step0Report()
    chosen: dict[str, tuple[str, str]] = {}
    labelled = _labelled(lists)
    for split in SPLIT_PRIORITY if isinstance(lists, dict) else (None,):
        for number, (line, label) in enumerate(labelled[split], start=1):
            report.lines += 1
            problem = line_problem(line)
            if problem is not None:
                _reject(report, label, number, *problem)
                continue
            formula = normalize_formula(line)
            if not formula:
                report.blank += 1
                continue
            fid = formula_id(formula)
            if fid in chosen:
                report.duplicates += 1
                report.cross_split_duplicates += chosen[fid][1] != (
                    label or hash_split(fid, ratios)
                )
                continue
            chosen[fid] = (formula, label or hash_split(fid, ratios))
    rows = sorted(chosen.items())
    table = pa.table(
        {
            "id": [fid for fid, _ in rows],
            "formula": [f for _, (f, _) in rows],
            "split": [s for _, (_, s) in rows],
        },
        schema=FORMULAS_SCHEMA,
    )
    report.formulas = table.num_rows
    report.by_split = dict(sorted(Counter(s for _, (_, s) in rows).items()))
    report.rejected_by_reason = dict(
        sorted(Counter(r["reason"] for r in report.rejections).items())
    )
    report.check()
    return table, report


def _reject(report: Step0Report, label: str | None, number: int, reason: str, detail: str) -> None:
    report.rejected += 1
    report.rejections.append({"list": label, "line": number, "reason": reason, "detail": detail})


def _labelled(
    lists: dict[str, list[str]] | list[str],
) -> dict[str | None, list[tuple[str, str | None]]]:
    if isinstance(lists, dict):
        return {split: [(line, split) for line in lists[split]] for split in SPLITS}
    return {None: [(line, None) for line in lists]}


def run(
    input_path: Path, ratios: SplitRatios, sha256: str | None = None
) -> tuple[pa.Table, Step0Report]:
    """``sha256``, when given, is the input file's digest, checked before anything is read."""
    if sha256 is not None and input_path.is_dir():
        raise SystemExit(f"step0.sha256 checks one list file; step0.input {input_path} is a folder")
    check_sha256(input_path, sha256)
    found = locate_inputs(input_path)
    if isinstance(found, Path):
        return build_table(read_lines(found), ratios)
    return build_table({split: read_lines(p) for split, p in found.items()}, ratios)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline step0", description=__doc__)
    cli.add_params_args(parser)
    parser.add_argument("--out", type=Path, required=True, help="Parquet table to write")
    parser.add_argument("--rejected", type=Path, required=True, help="Parquet: rejected lines")
    parser.add_argument("--report", type=Path, help="JSON file for the counts")
    parser.add_argument(
        "--normalized",
        type=Path,
        help="the normalize stage's output, read instead of step0.input when step0.raw is true",
    )
    args = parser.parse_args(argv)
    settings = cli.read_params(args, READS).step0
    if settings.raw:  # the normalize stage has read step0.input and checked its digest
        if args.normalized is None:
            raise SystemExit("step0: step0.raw is true, so pass --normalized (normalize's output)")
        table, report = run(args.normalized, settings.split)
    else:
        table, report = run(Path(settings.input), settings.split, settings.sha256)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, args.out)
    pq.write_table(
        pa.Table.from_pylist(report.rejections, schema=REJECTED_LINES_SCHEMA), args.rejected
    )
    if args.report:
        args.report.write_text(json.dumps(report.counts(), indent=2) + "\n")
    log = cli.setup_logging()
    log.info(
        "step0: %d lines in, %d blank, %d duplicates (%d across splits), %d rejected %s, "
        "%d formulas out %s",
        report.lines,
        report.blank,
        report.duplicates,
        report.cross_split_duplicates,
        report.rejected,
        report.rejected_by_reason,
        report.formulas,
        report.by_split,
    )
    for row in report.rejections[:20]:
        log.info(
            "step0: rejected line %d of %s list: %s",
            row["line"],
            row["list"] or "the",
            row["detail"],
        )
    return 0
