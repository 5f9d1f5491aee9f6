"""Shared fixtures: small real inputs, and a way to run the project's commands in a copy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline import config
from pipeline.config import RenderSettings, ShardSettings, SplitRatios
from pipeline.contracts import write_manifest
from pipeline.corpus import crop, generate, render, shards, vocab
from pipeline.corpus.step0 import build_table

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data" / "im2latex100k-val.formulas.norm.txt"
PROJECT_FILES = [
    "Snakefile",
    "dvc.yaml",
    "params.yaml",
    "workflow",
    "pipeline",
    ".dvc/config",
    ".dvcignore",
    ".gitignore",
]


def tool_env() -> dict[str, str]:
    """PATH with this interpreter's bin first, so snakemake, dvc and python are the project's."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PYTHONPATH", None)
    return env


def run(cmd: list[str] | str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a command and fail the test with its output if it fails."""
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        shell=isinstance(cmd, str),
    )
    if proc.returncode != 0:
        pytest.fail(f"{cmd} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def init_git(dest: Path, message: str = "init") -> None:
    """A repository with its own identity: `dvc exp run` commits, and CI may have no global one."""
    run(
        "git init -q && git config user.email pipeline@example.invalid"
        f" && git config user.name pipeline && git add -A && git commit -qm {message}",
        dest,
    )


def copy_project(dest: Path) -> Path:
    """A fresh git repository holding the project's pipeline files, like a new clone."""
    for name in PROJECT_FILES:
        src = ROOT / name
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(
                src, target, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True
            )
        else:
            shutil.copy2(src, target)
    return dest


@pytest.fixture
def sample_formulas() -> list[str]:
    return [
        r"x ^ { 2 } + y ^ { 2 } = z ^ { 2 }",
        r"\frac { a } { b } + \sqrt { c }",
        r"\sum _ { i = 1 } ^ { n } i = \frac { n ( n + 1 ) } { 2 }",
        r"\left( \begin{array} { c c } a & b \\ c & d \end{array} \right)",
        r"\alpha \beta \gamma",
    ]


# what tiny_shards renders and crops with; the tiny model records it like the workflow does
TINY_PREPROCESSING = {
    "dpi": 100,
    "font": "cm",
    "crop": {
        "pad": 8,
        "downsample": 2,
        "buckets": [[32, 256], [64, 512]],
        "scale_dpi": None,
        "scale_to": "render",
        "scale_seed": 0,
    },
}

TINY_TRAIN = {
    "batch_size": 8,
    "epochs": 50,
    "max_steps": 12,
    "checkpoint_every": 4,
    "val_bleu_samples": 8,
    "patience": 100,
    "max_len": 40,
    "learning_rate": 0.003,
    "progress_every_s": 1e-6,  # a progress line every step, as a long run has every 30 s
}


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory) -> Path:
    """~60 real rendered formulas in shards: the same code path as the pipeline, in-process."""
    root = tmp_path_factory.mktemp("data")
    formulas = generate.generate_formulas(60, seed=3, max_tokens=30)
    table, _ = build_table(formulas, SplitRatios(0.7, 0.15, 0.15))
    pq.write_table(table, root / "formulas.parquet")
    items = list(zip(table["id"].to_pylist(), table["formula"].to_pylist(), strict=True))
    dpi = TINY_PREPROCESSING["dpi"]
    rendered = render.to_table(render.render_formulas(items, RenderSettings(dpi=dpi)))
    cropped = crop.crop_table(rendered, config.section("crop", TINY_PREPROCESSING["crop"]))
    pq.write_table(cropped, root / "chunk-000.parquet")
    train_rows = [
        f
        for f, s in zip(table["formula"].to_pylist(), table["split"].to_pylist(), strict=True)
        if s == "train"
    ]
    voc, _ = vocab.build_vocab(train_rows, 1)
    voc.save(root / "vocab.json")
    out = root / "shards"
    _, manifest, _ = shards.build_shards(
        table, [root / "chunk-000.parquet"], voc, ShardSettings(), out
    )
    write_manifest(out, manifest)
    return root


def tiny_settings(variant: str = "seq2seq", **train_overrides) -> dict:
    """The --settings JSON the train rule would pass for a tiny model on tiny_shards."""
    return {
        "model": {"variant": variant, "preset": "tiny"},
        "train": TINY_TRAIN | train_overrides,
        "augment": {},
        "render": {"dpi": TINY_PREPROCESSING["dpi"], "font": TINY_PREPROCESSING["font"]},
        "crop": TINY_PREPROCESSING["crop"],
    }


def train_command(root: Path, work: Path, variant: str = "seq2seq", **overrides) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pipeline",
        "train",
        "--settings",
        json.dumps(tiny_settings(variant, **overrides)),
        "--shards",
        str(root / "shards"),
        "--vocab",
        str(root / "vocab.json"),
        "--out",
        str(work / "model"),
        "--checkpoints",
        str(work / "ckpt"),
        "--live",
        str(work / "live"),
    ]


def run_train(cmd: list[str], work: Path, env: dict | None = None) -> str:
    proc = subprocess.run(
        cmd, cwd=work, capture_output=True, text=True, timeout=300, env=env or tool_env()
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stderr


@pytest.fixture(scope="session")
def trained_tiny(tiny_shards, tmp_path_factory) -> tuple[Path, str]:
    """One tiny training run shared by the train and evaluate tests: TF start-up is slow."""
    work = tmp_path_factory.mktemp("trained")
    return work, run_train(train_command(tiny_shards, work), work)
