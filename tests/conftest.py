"""Shared fixtures: small real inputs, and a way to run the project's commands in a copy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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


def copy_project(dest: Path) -> Path:
    """A fresh git repository holding the project's pipeline files, like a new clone."""
    for name in PROJECT_FILES:
        src = ROOT / name
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__"))
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
