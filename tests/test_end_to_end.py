"""The whole data pipeline on ~200 generated formulas, through both `dvc repro` and `snakemake`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.contracts import MANIFEST
from pipeline.corpus import render
from pipeline.model import bundle
from tests.conftest import copy_project, init_git, run, tool_env
from tests.model.test_train import curves

pytestmark = pytest.mark.slow

SMALL = {
    "generate": {"count": 200},
    "render": {"chunks": 2, "batch_size": 60},
    "model": {"preset": "tiny"},
    "train": {"batch_size": 16, "max_steps": 10, "val_bleu_samples": 16, "max_len": 60},
    "evaluate": {"max_len": 60, "beam_width": 2, "heatmaps": 2, "gallery": 4, "worst": 4},
}
DATA_STAGES = {"generate", "normalize", "step0", "render", "crop", "vocab", "shards"}


def make_project(dest: Path, extra_formulas: list[str] = ()) -> Path:
    """A committed copy of the project with small params; extra formulas go into a real list."""
    copy_project(dest)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    for section, values in SMALL.items():
        params[section].update(values)
    if extra_formulas:
        run(
            [
                "python",
                "-m",
                "pipeline",
                "generate",
                "--settings",
                json.dumps({"generate": params["generate"]}),
                "--out",
                "lists/formulas.txt",
            ],
            dest,
        )
        with open(dest / "lists" / "formulas.txt", "a") as handle:
            handle.write("\n".join(extra_formulas) + "\n")
        params["step0"]["input"] = "lists/formulas.txt"
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    init_git(dest)
    return dest


def ran_stages(output: str) -> set[str]:
    return set(re.findall(r"Running stage '(\w+)'", output))


def check_accounting(project: Path) -> dict:
    report = json.loads((project / "reports" / "data.json").read_text())
    assert report["rows"] + report["failed"] + report["filtered"] == report["formulas_in"]
    manifest = json.loads((project / "data" / "shards" / MANIFEST).read_text())
    rows = sum(
        pq.read_metadata(project / "data" / "shards" / m["path"]).num_rows
        for m in manifest["shards"]
    )
    assert rows == report["rows"] > 0
    return report


WIDE = "x " + " ".join([r"\qquad"] * 40) + " y"  # ~13 inches: wider than every bucket
BAD = [r"\input { / e t c / p a s s w d }", r"\hspace { 1 c m } x", r"\,", WIDE]


def test_dvc_repro_then_noop_then_param_change_then_experiment(tmp_path):
    project = make_project(tmp_path / "p", extra_formulas=BAD + ["x + y", "x + y"])
    first = run(["dvc", "repro"], project, timeout=600)
    assert ran_stages(first.stdout) == DATA_STAGES | {"train", "evaluate"}
    report = check_accounting(project)
    assert report["failed_by_reason"] == {"blank": 1, "tex_error": 1, "unsafe": 1}
    assert report["filtered_by_reason"] == {"image_too_large": 1}
    step0_report = json.loads((project / "reports" / "step0.json").read_text())
    assert step0_report["duplicates"] >= 1
    metrics = json.loads((project / "metrics.json").read_text())
    assert metrics["decoding"] == "beam2" and "bleu" in metrics["greedy"]
    assert 0 <= metrics["visual"]["compile_rate"] <= 1
    assert (project / "reports" / "evaluation" / "index.html").is_file()
    live = json.loads((project / "dvclive" / "metrics.json").read_text())
    assert (live["stopped_by"], live["cut_by_time"], live["steps"]) == ("steps", False, 10)

    again = run(["dvc", "repro"], project)
    assert ran_stages(again.stdout) == set()
    assert "up to date" in run(["dvc", "status"], project).stdout

    # Code that only training runs changes: DVC reruns training and what follows it, not the
    # data stages, and deterministic training gives the very same model again.
    model_before = _out_md5(project, "train", "models/best")
    with open(project / "pipeline" / "model" / "schedule.py", "a") as handle:
        handle.write("# an edit that changes no behaviour\n")
    stale = set(re.findall(r"^(\w+):", run(["dvc", "status"], project).stdout, re.MULTILINE))
    assert stale == {"train", "evaluate"}
    assert ran_stages(run(["dvc", "repro"], project).stdout) == {"train", "evaluate"}
    assert _out_md5(project, "train", "models/best") == model_before

    # An experiment changes params: DVC reruns the stages that read them and what follows.
    run("git add -A && git commit -qm retrained", project)
    experiment = ["-S", "vocab.min_count=2", "-S", "shards.max_tokens=20"]
    experiment += ["-S", "model.variant=transformer"]
    exp = run(["dvc", "exp", "run", *experiment], project, timeout=600)
    assert ran_stages(exp.stdout) == {"vocab", "shards", "train", "evaluate"}
    assert bundle.read_record(project / "models" / "best")["model"]["variant"] == "transformer"
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    [entry] = _experiments(shown)
    assert _metric(entry, "reports/data.json", "filtered") > 0
    assert _metric(entry, "metrics.json", "samples") > 0
    plots = json.loads(run(["dvc", "plots", "show", "--json"], project).stdout)
    names = list(plots["data"])
    assert any("bleu_by_length" in name for name in names), names
    assert any("val/bleu" in name for name in names), names
    assert not plots.get("errors"), plots["errors"]


def _out_md5(project: Path, stage: str, path: str) -> str:
    return _outs(project)[path]  # an output belongs to one stage, so its path names it


def _experiments(shown: list) -> list:
    return [exp for rev in shown for exp in (rev.get("experiments") or [])]


def _metric(entry: dict, path: str, key: str):
    for rev in entry.get("revs", []):
        metrics = rev.get("data", {}).get("metrics", {}).get(path, {})
        if key in metrics.get("data", {}):
            return metrics["data"][key]
    return None


def test_snakemake_render_alone_then_dvc_commit_leaves_status_clean(tmp_path):
    project = make_project(tmp_path / "p")
    run(["snakemake", "-j2", "render"], project, timeout=600)
    assert len(list((project / "data" / "render").glob("chunk-*.parquet"))) == 2
    assert not (project / "data" / "crop").exists()
    run(["dvc", "commit", "-f", "--with-deps", "render"], project)
    assert "up to date" in run(["dvc", "status", "--with-deps", "render"], project).stdout

    # the data half by Snakemake alone (training is the other test's), then adopted by DVC
    run(["snakemake", "-j2", "shards"], project, timeout=600)
    check_accounting(project)
    run(["dvc", "commit", "-f", "--with-deps", "shards"], project)
    assert "up to date" in run(["dvc", "status", "--with-deps", "shards"], project).stdout
    assert ran_stages(run(["dvc", "repro", "shards"], project).stdout) == set()

    run(["dvc", "push", "--with-deps", "shards"], project)  # the default local remote works
    assert any((project / "dvc-remote").rglob("*"))
    run("rm -rf .dvc/cache data/shards", project)
    run(["dvc", "pull", "--with-deps", "shards"], project)
    check_accounting(project)


RESUMED = {"render": {"chunks": 4}, "train": {"max_steps": 12, "checkpoint_every": 2}}


def _resumable_project(dest: Path) -> Path:
    project = make_project(dest)
    params = yaml.safe_load((project / "params.yaml").read_text())
    for section, values in RESUMED.items():
        params[section].update(values)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run("git commit -qam resumable", project)
    return project


def _kill_when(project: Path, ready, what: str) -> None:
    """Start `dvc repro train`, kill its whole process group with SIGKILL once ``ready()``."""
    proc = subprocess.Popen(
        ["dvc", "repro", "train"],
        cwd=project,
        env=tool_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while not ready():
        assert proc.poll() is None, f"finished before {what}: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, f"never reached {what}"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _outs(project: Path) -> dict[str, str]:
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    return {o["path"]: o["md5"] for s in lock["stages"].values() for o in s.get("outs", [])}


def test_a_run_killed_in_render_crop_and_train_resumes_to_the_same_outputs(tmp_path):
    """kill -9 at three points; the README's command alone finishes the run, byte for byte."""
    whole = _resumable_project(tmp_path / "whole")
    run(["dvc", "repro", "train"], whole, timeout=600)

    project = _resumable_project(tmp_path / "killed")
    chunks = lambda stage: list((project / "data" / stage).glob("chunk-*.parquet"))  # noqa: E731
    _kill_when(project, lambda: len(chunks("render")) >= 1, "a finished render chunk")
    assert len(chunks("render")) < 4
    kept = list((project / ".cache" / "chunks").glob("render-*"))
    _kill_when(project, lambda: len(chunks("crop")) >= 1, "a finished crop chunk")
    # the manager's state file, written after a save's index and data: a checkpoint a restart
    # resumes (an index alone may be a save the kill cut short, and the rerun starts fresh)
    _kill_when(project, lambda: any(project.glob("checkpoints/*/checkpoint")), "a checkpoint")
    final = run(["dvc", "repro", "train"], project, timeout=600)

    log = final.stdout + final.stderr + (project / "logs" / "train.log").read_text()
    assert re.search(r"resumed from step [1-9]", log), log[-3000:]
    reused = [p.name for p in kept if p.exists()]
    assert reused, "no finished render chunk survived the kill"
    # the data, byte for byte; the model and dvclive's curves (which carry wall-clock times)
    # are compared below
    loose = {"dvclive/plots/metrics": "", "models/best": ""}
    assert _outs(project) | loose == _outs(whole) | loose
    assert_same_model(project / "models" / "best", whole / "models" / "best")
    resumed, uninterrupted = curves(project / "dvclive"), curves(whole / "dvclive")
    assert resumed.keys() == uninterrupted.keys()
    for name, rows in resumed.items():
        assert rows[0] == uninterrupted[name][0] and len(rows) == len(uninterrupted[name])
        values = np.array(rows[1:], dtype=float)
        np.testing.assert_allclose(values, np.array(uninterrupted[name][1:], float), atol=1e-4)
    assert not list(Path(tempfile.gettempdir()).glob("render-*-*")) or _only_live_scratch()


def assert_same_model(resumed: Path, whole: Path) -> None:
    """The resumed model is the uninterrupted one up to float rounding.

    Measured: the Singh variants' first step after a restore differs from the same step in an
    uninterrupted process in the last bits of a few encoder gradients (3.7e-9 at most), even
    with one thread and without oneDNN; the GRU notebook model resumes bit for bit
    (tests/model/test_train.py). Steps, epochs and what was recorded are the same.
    """
    first, second = bundle.load(resumed), bundle.load(whole)
    for x, y in zip(first.model.get_weights(), second.model.get_weights(), strict=True):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-5)
    same = ("model", "preprocessing", "max_len", "step", "epoch")
    assert {k: first.record[k] for k in same} == {k: second.record[k] for k in same}
    assert first.record["sha256"]["vocab.json"] == second.record["sha256"]["vocab.json"]


def _only_live_scratch() -> bool:
    """Scratch folders left now belong to running renders (other tests), never dead ones."""
    folders = Path(tempfile.gettempdir()).glob("render-*-*")
    return all(render._alive(int(f.name.split("-")[1])) for f in folders)
