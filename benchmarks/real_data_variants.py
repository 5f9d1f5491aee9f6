"""Each model variant trained for the same budget on real formulas, scored side by side.

Runs the pipeline in a copy of the project with `step0.input` pointing at the real im2latex-100k
validation formulas (split train/validation/test by the pipeline), prepares the data once, then
`dvc exp run -S model.variant=V ...` for each variant, one after the other, and prints one table
of the test metrics with the training samples/s (median of the run's progress lines) and the
decoding images/s (the test split, timed here, greedy and beam).

The budget is equal wall-clock minutes (`--minutes`: `train.max_minutes`, so the figures are
this machine's) or equal steps (`--steps`: `train.max_steps`, the deterministic budget `make run`
uses). A variant may carry its own settings, for side-by-side trials in one run:
`'transformer@train.learning_rate=0.001;train.warmup_steps=200'`. `--keep DIR` keeps the
prepared project there and reuses it next time.

    python benchmarks/real_data_variants.py [--minutes 20 | --steps 1500]
        [--variants seq2seq nopool strips transformer] [--keep DIR] [--json FILE]
    python benchmarks/real_data_variants.py --table FILE   # an earlier run's --json, again
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.contracts import shard_paths  # noqa: E402
from pipeline.model import bundle, decode  # noqa: E402
from tests.conftest import SHARED_DATA, copy_project, init_git, tool_env  # noqa: E402

CODE = ("pipeline", "workflow", "Snakefile", "dvc.yaml")  # what a kept project takes anew


def sh(cmd: list[str] | str, cwd: Path) -> str:
    proc = subprocess.run(
        cmd, cwd=cwd, env=tool_env(), shell=isinstance(cmd, str), text=True, capture_output=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def prepare(project: Path, formulas: Path) -> dict:
    """The data stages on the real formulas; in a kept project, the code is brought up to date
    (the code, and params it added: the project's params and the files DVC keeps stay) and DVC
    reruns what that touches."""
    if (project / ".git").is_dir():
        sh("git checkout -- params.yaml", project)  # not the last `dvc exp run`'s settings
        for name in CODE:
            target = project / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()
            copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
            copy(ROOT / name, target)
        add_new_params(project / "params.yaml")
        sh("git add -A && git commit -qm code --allow-empty", project)
    else:
        copy_project(project)
        params = yaml.safe_load((project / "params.yaml").read_text())
        params["step0"]["input"] = str(formulas)
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        init_git(project, "real")
    sh(["dvc", "repro", "shards"], project)
    sh("git add -A && git commit -qm data --allow-empty", project)
    return json.loads((project / "reports" / "data.json").read_text())


def add_new_params(path: Path) -> None:
    """Keys this code's params.yaml has and a kept project's lacks, with their defaults (so
    `-S` can set them); the project's own values stay."""
    kept = yaml.safe_load(path.read_text())
    for section, values in yaml.safe_load((ROOT / "params.yaml").read_text()).items():
        if isinstance(values, dict):
            kept[section] = values | kept.get(section, {})
        else:
            kept.setdefault(section, values)
    path.write_text(yaml.safe_dump(kept, sort_keys=False))


def budget_flags(minutes: float | None, steps: int | None) -> list[str]:
    if steps:
        return [f"train.max_steps={steps}", "train.max_minutes=0"]
    return [f"train.max_minutes={minutes}", "train.max_steps=0"]


def run_variant(project: Path, spec: str, budget: list[str]) -> dict:
    """Train and evaluate ``variant[@key=value;...]``; its own settings come last and win."""
    variant, _, extra = spec.partition("@")
    flags = [f"model.variant={variant}", *budget, *filter(None, extra.split(";"))]
    sh("git checkout -- params.yaml", project)  # `dvc exp run` leaves the last run's settings
    sh(["dvc", "exp", "run", *(arg for flag in flags for arg in ("-S", flag))], project)
    scores = json.loads((project / "metrics.json").read_text())
    live = json.loads((project / "dvclive" / "metrics.json").read_text())
    return scores | {
        "variant": spec,
        "steps": live.get("global_step"),
        "epochs": live.get("epoch"),
        "train_samples_per_s": train_rate(project / "logs" / "train.log"),
        "decode_images_per_s": decode_rates(project),
    }


def train_rate(log: Path) -> float | None:
    """The median of the samples/s that training's progress lines report."""
    rates = [float(m) for m in re.findall(r"([\d.]+) samples/s", log.read_text())]
    return statistics.median(rates) if rates else None


def decode_rates(project: Path) -> dict[str, float]:
    """Test images per second, greedy and beam 5, batches of 32, after one warm-up batch."""
    exported = bundle.load(project / "models" / "best")
    paths = shard_paths(project / "data" / "shards", "test")
    rates = {}
    for name, width in (("greedy", 1), ("beam5", 5)):
        settings = decode.DecodeSettings(beam_width=width, max_len=150, batch_size=32)
        decode.decode_split(exported, paths[:1], settings)  # compile
        start = time.perf_counter()
        decoded = decode.decode_split(exported, paths, settings)
        rates[name] = len(decoded.predictions) / (time.perf_counter() - start)
    return rates


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
SPEEDS = (("train/s", 7), ("dec/s", 6))


def _value(scores: dict, path: tuple[str, ...]):
    for key in path:
        scores = scores.get(key) if isinstance(scores, dict) else None
    return scores


def short_names(specs: list[str]) -> dict[str, str]:
    """``variant`` as it is; ``variant@settings`` as ``variant*N``, its settings told below."""
    names, starred = {}, 0
    for spec in specs:
        if "@" in spec:
            starred += 1
            names[spec] = f"{spec.partition('@')[0]}*{starred}"
        else:
            names[spec] = spec
    return names


def print_table(rows: list[dict]) -> None:
    """One line per variant and search: beam (the headline) and greedy, side by side."""
    header = " ".join(f"{name:>{width}}" for name, width, *_ in COLUMNS + SPEEDS)
    names = short_names([r["variant"] for r in rows])
    label = max(9, *(len(name) for name in names.values()))
    print(f"{'variant':{label}} {'search':7} {'epochs':>6} {'steps':>6} {header} {'test':>5}")
    for r in rows:
        searches = [(r["decoding"], r)]
        if "greedy" in r:
            searches.append(("greedy", r["greedy"]))
        for name, scores in searches:
            cells = []
            for _, width, path in COLUMNS:
                value = _value(scores, path)
                cells.append(f"{value:>{width}.3f}" if value is not None else f"{'-':>{width}}")
            train = r["train_samples_per_s"] if name == r["decoding"] else None
            speeds = (train, r["decode_images_per_s"].get(name))
            for (_, width), value in zip(SPEEDS, speeds, strict=True):
                cells.append(f"{value:>{width}.1f}" if value is not None else f"{'':>{width}}")
            print(
                f"{names[r['variant']]:{label}} {name:7} {r['epochs']:>6} {r['steps']:>6} "
                f"{' '.join(cells)} {r['samples']:>5}"
            )
    for spec, name in names.items():
        if name != spec:
            print(f"{name}: {spec.partition('@')[2]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--formulas", type=Path, default=SHARED_DATA)
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, default=60)
    budget.add_argument("--steps", type=int)
    parser.add_argument(
        "--variants", nargs="+", default=["seq2seq", "nopool", "strips", "transformer"]
    )
    parser.add_argument("--keep", type=Path, help="prepare the project here, or reuse it")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--table", type=Path, help="print the table of an earlier run's --json")
    args = parser.parse_args(argv)
    if args.table:
        print_table(json.loads(args.table.read_text())["variants"])
        return 0
    if not args.formulas.exists():
        print(f"skipped: {args.formulas} not found")
        return 0
    flags = budget_flags(args.minutes, args.steps)
    with tempfile.TemporaryDirectory(prefix="real-variants-") as tmp:
        project = args.keep.resolve() if args.keep else Path(tmp) / "project"
        data = prepare(project, args.formulas.resolve())
        rows = []
        for spec in args.variants:  # each row kept as soon as it exists
            rows.append(run_variant(project, spec, flags))
            if args.json:
                args.json.write_text(json.dumps({"data": data, "variants": rows}, indent=2))
    each = f"{args.steps} steps" if args.steps else f"{args.minutes:g} min"
    print(
        f"real formulas ({args.formulas.name}): {data['rows_by_split']} rows, "
        f"{data['failed']} failed, {data['filtered']} filtered; {each} per variant"
    )
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps({"data": data, "variants": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
