"""Each model variant trained for the same CPU budget on real formulas, scored side by side.

Runs the pipeline in a throw-away copy of the project with `step0.input` pointing at the real
im2latex-100k validation formulas (split train/validation/test by the pipeline), prepares the
data once, then `dvc exp run -S model.variant=V -S train.max_minutes=M -S train.max_steps=0` for
each variant (equal wall-clock minutes, so the figures are this machine's) and prints one table
of the test metrics.

    python benchmarks/real_data_variants.py [--minutes 60] [--variants seq2seq nopool strips]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.model import bundle  # noqa: E402
from tests.conftest import SHARED_DATA, copy_project, init_git, tool_env  # noqa: E402


def sh(cmd: list[str] | str, cwd: Path) -> str:
    proc = subprocess.run(
        cmd, cwd=cwd, env=tool_env(), shell=isinstance(cmd, str), text=True, capture_output=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def prepare(project: Path, formulas: Path) -> dict:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["step0"]["input"] = str(formulas)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    init_git(project, "real")
    sh(["dvc", "repro", "shards"], project)
    sh("git add -A && git commit -qm data", project)
    return json.loads((project / "reports" / "data.json").read_text())


def run_variant(project: Path, variant: str, minutes: float) -> dict:
    sh(
        [
            "dvc",
            "exp",
            "run",
            "-S",
            f"model.variant={variant}",
            "-S",
            f"train.max_minutes={minutes}",
            "-S",
            "train.max_steps=0",
        ],
        project,
    )
    scores = json.loads((project / "metrics.json").read_text())
    exported = bundle.read_record(project / "models" / "best")
    live = json.loads((project / "dvclive" / "metrics.json").read_text())
    return scores | {
        "variant": variant,
        "best_epoch": exported["epoch"],
        "steps": live.get("global_step"),
        "epochs": live.get("epoch"),
    }


COLUMNS = (  # header, width, metric path in metrics.json
    ("BLEU", 6, ("bleu",)),
    ("BLEU-u", 6, ("bleu_unsmoothed",)),
    ("edit", 6, ("edit_distance",)),
    ("exact", 6, ("exact_match",)),
    ("img", 6, ("visual", "image_match")),
    ("img-ws", 6, ("visual", "image_match_ws")),
    ("img-ed", 6, ("visual", "image_edit_distance")),
    ("compile", 7, ("visual", "compile_rate")),
)


def _value(scores: dict, path: tuple[str, ...]):
    for key in path:
        scores = scores.get(key) if isinstance(scores, dict) else None
    return scores


def print_table(rows: list[dict]) -> None:
    """One line per variant and search: beam (the headline) and greedy, side by side."""
    header = " ".join(f"{name:>{width}}" for name, width, _ in COLUMNS)
    print(f"{'variant':9} {'search':7} {'epochs':>6} {'steps':>6} {header} {'test':>5}")
    for r in rows:
        searches = [(r["decoding"], r)]
        if "greedy" in r:
            searches.append(("greedy", r["greedy"]))
        for name, scores in searches:
            cells = []
            for _, width, path in COLUMNS:
                value = _value(scores, path)
                cells.append(f"{value:>{width}.3f}" if value is not None else f"{'-':>{width}}")
            print(
                f"{r['variant']:9} {name:7} {r['epochs']:>6} {r['steps']:>6} "
                f"{' '.join(cells)} {r['samples']:>5}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--formulas", type=Path, default=SHARED_DATA)
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--variants", nargs="+", default=["seq2seq", "nopool", "strips"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not args.formulas.exists():
        print(f"skipped: {args.formulas} not found")
        return 0
    with tempfile.TemporaryDirectory(prefix="real-variants-") as tmp:
        project = copy_project(Path(tmp))
        data = prepare(project, args.formulas.resolve())
        rows = [run_variant(project, v, args.minutes) for v in args.variants]
    print(
        f"real formulas ({args.formulas.name}): {data['rows_by_split']} rows, "
        f"{data['failed']} failed, {data['filtered']} filtered; {args.minutes:g} min per variant"
    )
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps({"data": data, "variants": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
