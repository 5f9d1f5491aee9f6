"""The train stage with real TensorFlow on tiny data: budget, export, resume, distribution."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pipeline import train
from tests.conftest import run_train, tool_env, train_command


def test_settings_are_validated():
    with pytest.raises(SystemExit, match="unknown"):
        train.settings_from({"batchsize": 3})
    with pytest.raises(SystemExit, match="mixed_precision"):
        train.settings_from({"mixed_precision": "maybe"})
    with pytest.raises(SystemExit, match="lr_schedule"):
        train.settings_from({"lr_schedule": "sometimes"})
    assert train.settings_from({"batch_size": "16"}).batch_size == 16


def test_run_key_changes_with_anything_that_shapes_the_run():
    base = train.run_key({"variant": "seq2seq"}, train.TrainSettings(), "d")
    assert base == train.run_key({"variant": "seq2seq"}, train.TrainSettings(), "d")
    assert base != train.run_key({"variant": "strips"}, train.TrainSettings(), "d")
    assert base != train.run_key({"variant": "seq2seq"}, train.TrainSettings(seed=1), "d")
    assert base != train.run_key({"variant": "seq2seq"}, train.TrainSettings(), "e")


def test_training_exports_model_and_logs_curves(trained_tiny):
    work, log = trained_tiny
    exported = json.loads((work / "model" / "model.json").read_text())
    assert exported["model"]["variant"] == "seq2seq"
    assert exported["fixed_height"] is None and exported["pad_multiple"] > 1
    assert (work / "model" / "model.weights.h5").stat().st_size > 0
    assert (work / "model" / "vocab.json").exists()
    live = json.loads((work / "live" / "metrics.json").read_text())
    assert "loss" in live["train"] and "bleu" in live["val"]
    assert live["train"]["learning_rate"] == pytest.approx(0.003)  # constant: TINY_TRAIN's rate
    assert "done at step 12" in log


def test_a_killed_run_resumes_from_its_last_checkpoint(tiny_shards, tmp_path):
    cmd = train_command(
        tiny_shards,
        tmp_path,
        max_steps=40,
        checkpoint_every=3,
        lr_schedule="cosine",
        warmup_steps=5,
        final_lr_fraction=0.1,
    )
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        env=tool_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not _checkpoint_steps(tmp_path):
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = max(_checkpoint_steps(tmp_path))
    assert 0 < killed_at < 40
    log = run_train(cmd, tmp_path)
    assert f"resumed from step {killed_at}" in log
    assert "done at step 40" in log
    # the schedule picks up where the budget stands, not from the start: the last step (39 of
    # 40) runs close to the cosine's end, 0.1 of the peak
    last_rate = json.loads((tmp_path / "live" / "metrics.json").read_text())["train"]
    assert last_rate["learning_rate"] == pytest.approx(0.003 * 0.1, rel=0.02)


def _checkpoint_steps(work: Path) -> list[int]:
    return [int(p.name.split("-")[1].split(".")[0]) for p in work.glob("ckpt/*/ckpt-*.index")]


def test_distributed_step_on_two_logical_cpu_devices(tiny_shards, tmp_path):
    env = tool_env() | {"PIPELINE_CPU_DEVICES": "2"}
    log = run_train(train_command(tiny_shards, tmp_path, max_steps=4), tmp_path, env)
    assert "2 replica(s)" in log
    assert "done at step 4" in log
