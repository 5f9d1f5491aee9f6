"""How far training results move between runs and between CPU code paths, side by side.

The same params and code give bit-identical weights on one machine (tests/model/test_train.py
proves it on a tiny model). Across CPU types only floating-point summation order differs:
oneDNN picks kernels by instruction set, and TensorFlow can run without oneDNN at all. This
trains the default model for ``--steps`` steps on the project's shards (run `make run` or
`dvc repro shards` first) several times, each in a fresh folder, under:

- ``same``: the default environment (twice: the two must be identical),
- ``avx2``: ``ONEDNN_MAX_CPU_ISA=AVX2`` (oneDNN limited to an older CPU's instructions),
- ``no-onednn``: ``TF_ENABLE_ONEDNN_OPTS=0`` (Eigen's kernels instead of oneDNN's),

and prints, per run, the largest and the mean absolute weight difference from the first run,
and the validation loss and BLEU that training logged at its end.

    python benchmarks/determinism.py [--steps 200] [--params params.yaml]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.model import bundle  # noqa: E402
from tests.conftest import tool_env  # noqa: E402

RUNS = (
    ("same", {}),
    ("same again", {}),
    ("avx2", {"ONEDNN_MAX_CPU_ISA": "AVX2"}),
    ("no-onednn", {"TF_ENABLE_ONEDNN_OPTS": "0"}),
)


def train(work: Path, params: Path, env: dict[str, str]) -> tuple[list[np.ndarray], dict]:
    """One training run in ``work``; its exported weights and its final logged metrics."""
    command = [sys.executable, "-m", "pipeline", "train", "--params", str(params)]
    command += ["--shards", str(ROOT / "data" / "shards")]
    command += ["--vocab", str(ROOT / "data" / "vocab" / "vocab.json")]
    command += ["--out", str(work / "model"), "--checkpoints", str(work / "ckpt")]
    command += ["--live", str(work / "live")]
    proc = subprocess.run(command, cwd=ROOT, env=tool_env() | env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"training failed ({env}):\n{proc.stderr[-3000:]}")
    weights = bundle.load(work / "model").model.get_weights()
    return weights, json.loads((work / "live" / "metrics.json").read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    args = parser.parse_args(argv)
    if not (ROOT / "data" / "shards").is_dir():
        print("skipped: no shards in data/shards (run `make run` or `dvc repro shards` first)")
        return 0
    with tempfile.TemporaryDirectory(prefix="determinism-") as scratch:
        params = yaml.safe_load(args.params.read_text())
        params["train"] |= {"max_steps": args.steps, "max_minutes": 0}
        short = Path(scratch) / "params.yaml"
        short.write_text(yaml.safe_dump(params))
        results = [
            (name, *train(Path(scratch) / str(i), short, env)) for i, (name, env) in enumerate(RUNS)
        ]
    model = params["model"]
    print(
        f"determinism: {model['variant']} ({model['preset']}), {args.steps} steps, {os.uname()[4]}"
    )
    print(f"{'run':12} {'max |dw|':>10} {'mean |dw|':>10} {'val loss':>9} {'val BLEU':>9}")
    reference = results[0][1]
    for name, weights, metrics in results:
        diffs = [np.abs(a - b) for a, b in zip(reference, weights, strict=True)]
        largest = max(float(d.max()) for d in diffs)
        mean = sum(float(d.sum()) for d in diffs) / sum(d.size for d in diffs)
        val = metrics["val"]
        print(f"{name:12} {largest:>10.2e} {mean:>10.2e} {val['loss']:>9.4f} {val['bleu']:>9.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
