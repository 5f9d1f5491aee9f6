"""The whole data pipeline on ~200 generated formulas, through both `dvc repro` and `snakemake`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.contracts import MANIFEST
from tests.conftest import copy_project, init_git, run

pytestmark = pytest.mark.slow

SMALL = {
    "generate": {"count": 200},
    "render": {"chunks": 2, "batch_size": 60},
    "model": {"preset": "tiny"},
    "train": {"batch_size": 16, "max_steps": 10, "val_bleu_samples": 16, "max_len": 60},
    "evaluate": {"max_len": 60, "beam_width": 2, "heatmaps": 2, "gallery": 4, "worst": 4},
}
DATA_STAGES = {"generate", "step0", "render", "crop", "vocab", "shards"}


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

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["vocab"]["min_count"] = 2
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    rerun = {"vocab", "shards", "train", "evaluate"}
    assert ran_stages(run(["dvc", "repro"], project).stdout) == rerun

    run("git add -A && git commit -qm min_count", project)
    run(["dvc", "exp", "run", "-S", "shards.max_tokens=20"], project, timeout=600)
    run(["dvc", "exp", "run", "-S", "model.variant=strips"], project, timeout=600)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    filtered = [_metric(e, "reports/data.json", "filtered") for e in _experiments(shown)]
    assert any(f and f > 0 for f in filtered), filtered
    samples = [_metric(e, "metrics.json", "samples") for e in _experiments(shown)]
    assert len(samples) == 2 and all(s and s > 0 for s in samples), samples
    plots = json.loads(run(["dvc", "plots", "show", "--json"], project).stdout)
    names = list(plots["data"])
    assert any("bleu_by_length" in name for name in names), names
    assert any("val/bleu" in name for name in names), names
    assert not plots.get("errors"), plots["errors"]


def _out_md5(project: Path, stage: str, path: str) -> str:
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    return next(o["md5"] for o in lock["stages"][stage]["outs"] if o["path"] == path)


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

    run(["snakemake", "-j2"], project, timeout=600)
    check_accounting(project)
    run(["dvc", "commit", "-f"], project)
    assert "up to date" in run(["dvc", "status"], project).stdout
    assert ran_stages(run(["dvc", "repro"], project).stdout) == set()

    run(["dvc", "push"], project)  # the default local remote works out of the box
    assert any((project / "dvc-remote").rglob("*"))
    run("rm -rf .dvc/cache data/shards", project)
    run(["dvc", "pull"], project)
    check_accounting(project)
