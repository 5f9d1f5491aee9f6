"""Faults a user hits by accident, injected one by one: what happens, and whether anything is lost.

Prints the fault table (each row injected and observed here, in this run), then the render
fuzz: random chains of every box-drawing construct, rendered in one batch and each alone,
with the differences counted. The kill -9 resume checks need whole `dvc repro` runs; they
are tests (tests/test_end_to_end.py, tests/model/test_train.py) and the README quotes them.

    python benchmarks/reliability.py [--fuzz 300] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.config import CropSettings, RenderSettings  # noqa: E402
from pipeline.contracts import MANIFEST, ShardError, sha256_file, shard_paths  # noqa: E402
from pipeline.corpus import render, step0, texsafe  # noqa: E402
from pipeline.corpus.step0 import formula_id  # noqa: E402
from pipeline.model import bundle, predict  # noqa: E402
from tests.corpus import boxes  # noqa: E402

SETTINGS = RenderSettings(dpi=100, batch_size=200, timeout_s=30)
UNDRAWABLE = boxes.nested("\\fbox", 17)  # TeX typesets it; dvipng's DVI stack overflows
Row = tuple[str, str, str]  # fault, what happened, nothing lost


def good_formulas(count: int) -> list[str]:
    rng = random.Random(1)
    return [
        f"x _ {{ {rng.randint(0, 9)} }} + {rng.choice('abcdefgh')} ^ {{ {i % 10} }}"
        for i in range(count)
    ]


def undrawable_in_batch(folder: Path) -> Row:
    good = list(dict.fromkeys(good_formulas(146)))
    items = [(formula_id(f), f) for f in good[:3] + [UNDRAWABLE] + good[3:]]
    results = render.BatchRenderer(SETTINGS, folder).render(items)
    ok = sum(r.status == "ok" for r in results)
    bad = next(r for r in results if r.id == formula_id(UNDRAWABLE))
    what = f"{ok}/{len(good)} others drawn; it fails alone: {bad.reason} ({bad.error})"
    return "a page dvipng cannot draw, mid-batch (texsafe bypassed)", what, _yes(ok == len(good))


def undrawable_refused(_: Path) -> Row:
    [result] = render.render_formulas([("deep", UNDRAWABLE)], SETTINGS)
    return "the same formula through render", f"{result.reason}: {result.error}", "yes"


def _shards(folder: Path) -> Path:
    shards = folder / "shards"
    shards.mkdir()
    table = pa.table({"id": ["a", "b"], "tokens": [[1, 5, 2], [1, 6, 2]]})
    pq.write_table(table, shards / "train-0000.parquet")
    entry = {"split": "train", "path": "train-0000.parquet"}
    entry["sha256"] = sha256_file(shards / entry["path"])
    (shards / MANIFEST).write_text(json.dumps({"shards": [entry]}))
    return shards


def altered_shard(folder: Path) -> Row:
    shards = _shards(folder)
    table = pa.table({"id": ["a", "b"], "tokens": [[1, 7, 2], [1, 6, 2]]})
    pq.write_table(table, shards / "train-0000.parquet")  # still valid Parquet
    return "a shard's tokens altered (valid Parquet)", _refusal(shards), "yes"


def truncated_shard(folder: Path) -> Row:
    shards = _shards(folder)
    path = shards / "train-0000.parquet"
    path.write_bytes(path.read_bytes()[:100])
    return "a shard truncated", _refusal(shards), "yes"


def _refusal(shards: Path) -> str:
    try:
        shard_paths(shards, "train")
    except ShardError as error:
        return f"refused before use: {str(error).split(': ', 1)[0]} ..."
    return "USED"


def model_input() -> predict.ModelInput:
    return predict.ModelInput(CropSettings(), 8, None, 200)


def fifo_input(folder: Path) -> Row:
    fifo = folder / "x.png"
    os.mkfifo(fifo)
    return "a FIFO named x.png given to predict", _read(fifo), "yes"


def dev_zero(_: Path) -> Row:
    return "/dev/zero given to predict", _read(Path("/dev/zero")), "yes"


def huge_file(folder: Path) -> Row:
    huge = folder / "huge.png"
    with open(huge, "wb") as handle:
        handle.truncate(2**30)  # 1 GiB, sparse
    return "a 1 GiB file given to predict", _read(huge), "yes"


def modified_weights(folder: Path) -> Row:
    model = folder / "model"
    model.mkdir()
    (model / bundle.VOCAB).write_text("{}")
    (model / bundle.WEIGHTS).write_bytes(b"weights" * 1000)
    digests = {name: sha256_file(model / name) for name in (bundle.VOCAB, bundle.WEIGHTS)}
    record = {"sha256": digests, "preprocessing": {}}
    (model / bundle.RECORD).write_text(json.dumps(record))
    (model / bundle.WEIGHTS).write_bytes(b"weights" * 999)  # truncated
    try:
        bundle.read_record(model)
    except bundle.BundleError as error:
        return "the exported model's weights truncated", f"refused: {error}", "yes"
    return "the exported model's weights truncated", "USED", "NO"


def _read(path: Path) -> str:
    start = time.perf_counter()
    try:
        predict._read(path, model_input())
    except predict.ImageError as error:
        return f"that input's error in {time.perf_counter() - start:.3f} s: {error}"
    return "READ"


def separators(_: Path) -> Row:
    lines = ["x + y", "a\u2028b", "c\x0cd", "e\u0085f", "g\u00a0h"]
    table, report = step0.build_table(lines, step0.SplitRatios())
    what = f"{len(lines)} lines: {table.num_rows} formula, {report.rejected} recorded rejections"
    return "Unicode separators and a no-break space in a list", what, _yes(report.rejected == 4)


def invalid_utf8(folder: Path) -> Row:
    path = folder / "list.txt"
    path.write_bytes(b"x + y\n\xff\xfe bad\nz\n")
    lines = step0.read_lines(path)
    table, report = step0.build_table(lines, step0.SplitRatios())
    line = report.rejections[0]["line"] if report.rejections else None
    what = f"{table.num_rows} formulas, line {line} rejected ({report.rejected_by_reason})"
    return "an invalid UTF-8 line", what, _yes(table.num_rows == 2 and line == 2)


def trailing_newline(_: Path) -> Row:
    bad = "\\hspace { 1 c m } x\r\n"  # passes texsafe, fails in TeX
    items = [("a", "a + b"), ("bad", bad), ("c", "c + d")]
    direct = {r.id: r for r in render.render_formulas(items, SETTINGS)}
    what = (
        f"the error stays on its formula: {direct['bad'].reason}; neighbours {direct['a'].status}"
    )
    return (
        "render_formulas given a formula ending in \\r\\n",
        what,
        _yes(direct["c"].status == "ok"),
    )


def stale_scratch(_: Path) -> Row:
    dead = Path(tempfile.gettempdir()) / f"{render.SCRATCH_PREFIX}999999999-test"
    dead.mkdir(exist_ok=True)
    with render.scratch_folder():
        pass
    return "scratch left by a killed render", f"removed by the next: {not dead.exists()}", "yes"


FAULTS: list[Callable[[Path], Row]] = [
    undrawable_in_batch,
    undrawable_refused,
    altered_shard,
    truncated_shard,
    fifo_input,
    dev_zero,
    huge_file,
    modified_weights,
    separators,
    invalid_utf8,
    trailing_newline,
    stale_scratch,
]


def _yes(flag: bool) -> str:
    return "yes" if flag else "NO"


def fuzz(count: int, seed: int, folder: Path) -> None:
    """Half the chains from every construct, half from the costly ones (to reach the box
    limit); the accepted ones rendered in one batch and alone, the ones refused for box depth
    rendered anyway (texsafe bypassed) beside good formulas, which must all still be drawn."""
    rng = random.Random(seed)
    chains = [
        boxes.random_nesting(rng, rng.randint(6, 30), boxes.COSTLY if i % 2 else boxes.MATH)
        for i in range(count)
    ]
    formulas = list(dict.fromkeys(chains))
    verdicts = {f: texsafe.check_formula(f) for f in formulas}
    accepted = [f for f, reason in verdicts.items() if reason is None]
    too_deep = [f for f, reason in verdicts.items() if reason and "dvipng" in reason]
    reasons = Counter(
        "box depth" if "dvipng" in r else "copying" if "copy" in r else "other"
        for r in verdicts.values()
        if r
    )
    batch = RenderSettings(dpi=40, batch_size=len(formulas), timeout_s=30)
    together = {r.id: r for r in render.render_formulas(_items(formulas), batch)}
    renderer = render.BatchRenderer(batch, folder)
    differences = 0
    for formula in accepted:
        alone = renderer.render([(formula_id(formula), texsafe.normalize(formula))])[0]
        mine = together[formula_id(formula)]
        differences += (mine.status, mine.png) != (alone.status, alone.png)
    good = good_formulas(len(too_deep))
    bypassed = renderer.render(
        _items([f for pair in zip(too_deep, good, strict=True) for f in pair])
    )
    deep = Counter(r.reason or "ok" for r in bypassed if r.id in set(_ids(too_deep)))
    drawn = sum(r.status == "ok" for r in bypassed if r.id in set(_ids(good)))
    outcomes = Counter(r.reason or "ok" for r in together.values())
    print(f"\nfuzz (seed {seed}): {len(formulas)} nested formulas tried, {len(accepted)} accepted")
    print(f"  refused up front: {dict(reasons)}")
    print(f"  rendered in one batch: {dict(outcomes)}")
    print(f"  batch vs alone, accepted formulas: {differences} differences")
    print(
        f"  refused for box depth, rendered anyway beside {len(good)} good formulas: "
        f"{dict(deep)}; good ones drawn: {drawn}/{len(good)}"
    )


def _items(formulas: list[str]) -> list[tuple[str, str]]:
    return [(formula_id(f), texsafe.normalize(f)) for f in formulas]


def _ids(formulas: list[str]) -> list[str]:
    return [formula_id(f) for f in formulas]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fuzz", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rows = []
    for fault in FAULTS:
        with tempfile.TemporaryDirectory() as scratch:
            rows.append(fault(Path(scratch)))
    print(f"{'fault injected':<54} {'nothing lost':<13} what happened")
    for fault, what, kept in rows:
        what = re.sub(r"/tmp/[^/ ]+/", "", what)  # the scratch folder says nothing
        print(f"{fault:<54} {kept:<13} {what[:150]}")
    with tempfile.TemporaryDirectory() as scratch:
        fuzz(args.fuzz, args.seed, Path(scratch))
    return 0 if all(kept == "yes" for _, _, kept in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
