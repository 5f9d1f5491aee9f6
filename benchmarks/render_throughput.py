"""Render throughput: the batched render stage vs one pdflatex + one rasterizer call per formula.

Both run on one core, side by side in one process, on the same real formulas, so the ratio is
meaningful on a shared, noisy machine. The per-formula baseline is what im2markup and most peers
do (pdflatex, then a rasterizer on the PDF); here the rasterizer is poppler's pdftoppm.

    python benchmarks/render_throughput.py [--formulas FILE] [--count 3000] [--baseline 60]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.config import RenderSettings  # noqa: E402
from pipeline.contracts import normalize_formula as normalize  # noqa: E402
from pipeline.corpus import render, texrun, texsafe  # noqa: E402
from pipeline.corpus.step0 import formula_id  # noqa: E402

DEFAULT_FORMULAS = ROOT.parent / "shared" / "data" / "im2latex100k-val.formulas.norm.txt"


def per_formula(formula: str, scratch: Path, dpi: int, timeout_s: float) -> str:
    """The peers' approach for one formula: its own document, pdflatex, then pdftoppm."""
    for stale in scratch.iterdir():
        stale.unlink()
    doc = texrun.PREAMBLE + texrun.display_math(formula) + "\n\\end{document}\n"
    (scratch / "f.tex").write_text(doc)
    tex = texrun.run_tool(
        ["pdflatex", "-interaction=batchmode", "-no-shell-escape", "f.tex"], scratch, timeout_s
    )
    if tex.returncode != 0 or not (scratch / "f.pdf").exists():
        return "failed"
    texrun.run_tool(["pdftoppm", "-r", str(dpi), "-png", "f.pdf", "f"], scratch, timeout_s)
    return "ok" if any(scratch.glob("f*.png")) else "failed"


def run_baseline(formulas: list[str], dpi: int) -> tuple[float, Counter]:
    outcomes: Counter = Counter()
    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        for formula in formulas:
            outcomes[per_formula(formula, Path(scratch), dpi, 60)] += 1
        return time.perf_counter() - start, outcomes


def run_batched(formulas: list[str], settings: RenderSettings) -> tuple[float, list]:
    items = [(formula_id(f), f) for f in formulas]
    start = time.perf_counter()
    results = render.render_formulas(items, settings)
    return time.perf_counter() - start, results


def load(path: Path, count: int) -> list[str]:
    unique = list(dict.fromkeys(normalize(line) for line in path.read_text().splitlines()))
    return [f for f in unique if f][:count]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--formulas", type=Path, default=DEFAULT_FORMULAS)
    parser.add_argument("--count", type=int, default=3000, help="formulas for the batched run")
    parser.add_argument("--baseline", type=int, default=60, help="formulas for the baseline")
    parser.add_argument("--dpi", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if not args.formulas.exists():
        print(f"skipped: {args.formulas} not found (real formulas live in ../shared/data/)")
        return 0
    missing = [t for t in ("latex", "dvipng", "pdflatex", "pdftoppm") if not shutil.which(t)]
    if missing:
        print(f"skipped: {', '.join(missing)} not installed (make deps installs them)")
        return 0
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core: figures are per core
    formulas = load(args.formulas, args.count)
    settings = RenderSettings(dpi=args.dpi, batch_size=args.batch_size)

    base_s, base_outcomes = run_baseline(formulas[: args.baseline], args.dpi)
    batch_s, results = run_batched(formulas, settings)
    reasons = Counter(r.reason or "ok" for r in results)
    check_s = timed_check(formulas)

    # Are failures isolated? Same subset, both approaches, the same formulas must fail.
    subset = {formula_id(f) for f in formulas[: args.baseline]}
    batch_failed = sum(1 for r in results if r.id in subset and r.status != "ok")
    figures = {
        "formulas": len(formulas),
        "dpi": args.dpi,
        "batch_size": args.batch_size,
        "batched_formulas_per_s_per_core": round(len(formulas) / batch_s, 1),
        "baseline_formulas": args.baseline,
        "baseline_formulas_per_s_per_core": round(args.baseline / base_s, 2),
        "speedup": round((len(formulas) / batch_s) / (args.baseline / base_s), 1),
        "batched_outcomes": dict(reasons),
        "baseline_failed_on_subset": base_outcomes["failed"],
        "batched_failed_on_subset": batch_failed,
        "safety_check_ms_per_formula": round(1000 * check_s / len(formulas), 4),
    }
    print_table(figures)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def timed_check(formulas: list[str]) -> float:
    start = time.perf_counter()
    for formula in formulas:
        texsafe.check_formula(formula)
    return time.perf_counter() - start


def print_table(figures: dict) -> None:
    print(f"render throughput, one core, {figures['dpi']} dpi, real formulas")
    print(
        f"  batched render stage : {figures['batched_formulas_per_s_per_core']:>8} formulas/s "
        f"({figures['formulas']} formulas, batches of {figures['batch_size']})"
    )
    print(
        f"  pdflatex+pdftoppm    : {figures['baseline_formulas_per_s_per_core']:>8} formulas/s "
        f"({figures['baseline_formulas']} formulas)"
    )
    print(f"  speed-up             : {figures['speedup']:>8}x")
    print(f"  batched outcomes     : {figures['batched_outcomes']}")
    print(
        f"  failures on the baseline's subset: baseline {figures['baseline_failed_on_subset']}, "
        f"batched {figures['batched_failed_on_subset']}"
    )


if __name__ == "__main__":
    sys.exit(main())
