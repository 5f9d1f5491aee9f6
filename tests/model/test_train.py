"""The train stage with real TensorFlow on tiny data: budget, export, resume, determinism."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline import config
from pipeline.config import ModelSettings, TrainSettings
from pipeline.contracts import shard_paths
from pipeline.model import bundle, decode, predict
from pipeline.model.trainer import Trainer, restore_curves, run_key
from tests.conftest import (
    TINY_PREPROCESSING,
    run_train,
    tiny_settings,
    tool_env,
    train_command,
)

# what the resume test trains: long enough to kill midway, with every piece of
# state that must survive a restart (cosine schedule, warm-up, moving average)
RESUMABLE = {
    "max_steps": 40,
    "checkpoint_every": 3,
    "lr_schedule": "cosine",
    "warmup_steps": 5,
    "final_lr_fraction": 0.1,
    "ema_decay": 0.9,
}


def test_run_key_changes_with_anything_that_shapes_the_run():
    seq2seq, strips = ModelSettings(variant="seq2seq"), ModelSettings(variant="strips")
    base = run_key(seq2seq, TrainSettings(), "d")
    assert base == run_key(seq2seq, TrainSettings(), "d")
    assert base != run_key(strips, TrainSettings(), "d")
    assert base != run_key(seq2seq, TrainSettings(seed=1), "d")
    assert base != run_key(seq2seq, TrainSettings(), "e")


def test_training_exports_model_and_logs_curves(trained_tiny):
    work, log = trained_tiny
    exported = bundle.load(work / "model")
    assert exported.settings.variant == "seq2seq"
    assert exported.fixed_height is None and exported.pad_multiple > 1
    assert exported.preprocessing.as_dict() == TINY_PREPROCESSING  # from the params, as a rule
    live = json.loads((work / "live" / "metrics.json").read_text())
    assert "loss" in live["train"] and "bleu" in live["val"]
    assert live["train"]["learning_rate"] == pytest.approx(0.003)  # constant: TINY_TRAIN's rate
    assert (live["stopped_by"], live["cut_by_time"], live["steps"]) == ("steps", False, 12)
    assert "done at step 12" in log and "stopped by steps" in log
    progress = r"train: 12/12 steps, [\d.]+ samples/s, about 0m 00s left; epoch \d, loss [\d.]+"
    assert re.search(progress, log), log[-3000:]


@pytest.fixture(scope="module")
def uninterrupted(tiny_shards, tmp_path_factory) -> Path:
    """One run of RESUMABLE from start to end, for the resume test: a killed run that resumes
    to the same weights, metrics and curves also shows that two runs of the same params give
    the same model (and the end-to-end test retrains through DVC to the same file)."""
    work = tmp_path_factory.mktemp("uninterrupted")
    run_train(train_command(tiny_shards, work, **RESUMABLE), work)
    return work


def assert_same_run(a: Path, b: Path) -> None:
    """Bit-identical exported weights, and the same metrics to the last digit."""
    first, second = bundle.load(a / "model"), bundle.load(b / "model")
    for x, y in zip(first.model.get_weights(), second.model.get_weights(), strict=True):
        np.testing.assert_array_equal(x, y)
    for name in ("metrics.json",):
        assert json.loads((a / "live" / name).read_text()) == json.loads(
            (b / "live" / name).read_text()
        )
    assert first.record == second.record


def test_a_killed_run_resumes_to_the_uninterrupted_model(tiny_shards, uninterrupted, tmp_path):
    cmd = train_command(tiny_shards, tmp_path, **RESUMABLE)
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
    while time.monotonic() < deadline and not _past_an_epoch(tmp_path):
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = _latest_checkpoint(tmp_path)  # an index file alone may be a save cut short
    assert 0 < killed_at < 40
    shutil.rmtree(tmp_path / "live")  # what DVC does to the stage's outputs before a rerun
    log = run_train(cmd, tmp_path)
    assert f"resumed from step {killed_at}" in log
    assert "done at step 40" in log
    # the schedule picks up where the budget stands, not from the start: the last step (39 of
    # 40) runs close to the cosine's end, 0.1 of the peak
    last_rate = json.loads((tmp_path / "live" / "metrics.json").read_text())["train"]
    assert last_rate["learning_rate"] == pytest.approx(0.003 * 0.1, rel=0.02)
    assert_same_run(uninterrupted, tmp_path)
    assert curves(tmp_path / "live") == curves(uninterrupted / "live")


def curves(live: Path) -> dict[str, list[list[str]]]:
    """Every curve dvclive logged, without its wall-clock timestamps."""
    found = {}
    for tsv in sorted(live.rglob("*.tsv")):
        rows = [line.split("\t") for line in tsv.read_text().splitlines()]
        keep = [i for i, name in enumerate(rows[0]) if name != "timestamp"]
        found[str(tsv.relative_to(live))] = [[row[i] for i in keep] for row in rows]
    assert found
    return found


def _past_an_epoch(work: Path) -> bool:
    """A checkpoint after the curves were first kept beside the checkpoints."""
    return any(work.glob("ckpt/*/live")) and max(_checkpoint_steps(work), default=0) >= 12


def _latest_checkpoint(work: Path) -> int:
    """The step of the checkpoint the manager recorded last: the one a restart resumes."""
    [state] = work.glob("ckpt/*/checkpoint")
    return int(re.search(r'model_checkpoint_path: "ckpt-(\d+)"', state.read_text())[1])


def _checkpoint_steps(work: Path) -> list[int]:
    return [int(p.name.split("-")[1].split(".")[0]) for p in work.glob("ckpt/*/ckpt-*.index")]


def _loopback_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def test_two_worker_processes_train_what_two_devices_in_one_process_do(tiny_shards, tmp_path):
    """MultiWorkerMirroredStrategy from TF_CONFIG alone: two processes on the loopback address
    train the same weights as MirroredStrategy over two logical devices, each replica on half of
    every batch, and only worker 0 writes the stage's outputs. (The transformer: its step on
    two devices is checked here too.)"""
    settings = {"max_steps": 4, "ema_decay": 0.9, "val_bleu_samples": 0}
    cmd = train_command(tiny_shards, tmp_path / "devices", "transformer", **settings)
    (tmp_path / "devices").mkdir()
    log = run_train(cmd, tmp_path / "devices", tool_env() | {"PIPELINE_CPU_DEVICES": "2"})
    assert "worker 0 of 1, 2 replica(s)" in log and "done at step 4" in log

    work = tmp_path / "workers"
    work.mkdir()
    cluster = [f"127.0.0.1:{port}" for port in _loopback_ports(2)]
    procs = []
    for index in range(2):
        scratch = tmp_path / f"tmp{index}"
        scratch.mkdir()
        config = {"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}}
        env = tool_env() | {"TF_CONFIG": json.dumps(config), "TMPDIR": str(scratch)}
        cmd = train_command(tiny_shards, work, "transformer", **settings)
        procs.append(subprocess.Popen(cmd, cwd=work, env=env, stderr=subprocess.PIPE, text=True))
    logs = [proc.communicate(timeout=300)[1] for proc in procs]
    for index, (proc, log) in enumerate(zip(procs, logs, strict=True)):
        assert proc.returncode == 0, log[-4000:]
        assert f"worker {index} of 2, 2 replica(s)" in log and "done at step 4" in log
    # the same to float rounding: a convolution's gradient sums in an order that depends on
    # the threads the process has, and Adam turns a near-zero gradient's noise into a step
    # (measured: at most 3e-7 apart after 4 steps)
    one, two = bundle.load(tmp_path / "devices" / "model"), bundle.load(work / "model")
    for x, y in zip(one.model.get_weights(), two.model.get_weights(), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
    assert one.record["step"] == two.record["step"] == 4
    assert two.settings.variant == "transformer"
    assert not any((tmp_path / "tmp1").iterdir())  # worker 1 removed what it wrote


def in_process_trainer(tiny_shards: Path, **train_overrides) -> Trainer:
    """The train stage's Trainer in this process: one replica, the default strategy."""
    params = config.parse(tiny_settings(**train_overrides))
    return Trainer(
        params.model,
        params.train,
        tiny_shards / "shards",
        tiny_shards / "vocab.json",
        bundle.Preprocessing(params.render.dpi, params.crop),
    )


def test_a_time_cap_cuts_the_run_and_says_so(tiny_shards, tmp_path):
    """``max_minutes`` (here 6 ms) ends training after its first step, in this process."""
    trainer = in_process_trainer(tiny_shards, max_minutes=1e-4, max_steps=0, label_smoothing=0.1)
    trainer.run(tmp_path / "model", tmp_path / "ckpt", tmp_path / "live")
    live = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert (live["stopped_by"], live["cut_by_time"], live["steps"]) == ("minutes", True, 1)
    assert bundle.read_record(tmp_path / "model")["step"] == 1


def test_moving_average_follows_the_weights_and_is_what_validation_sees(tiny_shards):
    trainer = in_process_trainer(tiny_shards, ema_decay=0.5)
    trainer.build()
    weights = trainer.model.trainable_variables
    step = trainer.make_train_step()
    batches = iter(trainer.train_data(epoch=0, skip=0).repeat())
    before = [w.numpy() for w in weights]
    step(*next(batches))  # the ramp's first step: decay min(0.5, 2/11)
    first = [w.numpy() for w in weights]
    expected = [2 / 11 * b + 9 / 11 * a for b, a in zip(before, first, strict=True)]
    step(*next(batches))  # still the ramp: decay min(0.5, 3/12) = 0.25
    second = [w.numpy() for w in weights]
    expected = [0.25 * e + 0.75 * w for e, w in zip(expected, second, strict=True)]
    shadows = [s.numpy() for s in trainer.ema.shadows]
    for shadow, want in zip(shadows, expected, strict=True):
        np.testing.assert_allclose(shadow, want, rtol=1e-5, atol=1e-6)
    assert any(not np.allclose(s, w) for s, w in zip(shadows, second, strict=True))
    with trainer.averaged_weights():
        for weight, shadow in zip(weights, shadows, strict=True):
            np.testing.assert_array_equal(weight.numpy(), shadow)
    for weight, raw in zip(weights, second, strict=True):
        np.testing.assert_array_equal(weight.numpy(), raw)


def test_restored_curves_stop_where_the_checkpoint_does(tmp_path):
    """The copy beside the checkpoints may be an epoch ahead of them: that epoch is cut."""
    kept, live = tmp_path / "kept", tmp_path / "live"
    (kept / "plots" / "metrics").mkdir(parents=True)
    rows = "".join(f"{100 + s}\t{s}\t0.{s}\n" for s in range(4))
    (kept / "plots" / "metrics" / "loss.tsv").write_text("timestamp\tstep\tloss\n" + rows)
    (live / "stale").mkdir(parents=True)
    assert restore_curves(kept, live, 2)
    assert not (live / "stale").exists()
    restored = (live / "plots" / "metrics" / "loss.tsv").read_text().splitlines()
    assert restored == ["timestamp\tstep\tloss", "100\t0\t0.0", "101\t1\t0.1"]
    assert not restore_curves(tmp_path / "nothing", live, 2)


# The published graph (the paper preset) at CPU-test sizes: the 128 x 1088 canvas in its frame
PAPER_SHAPED = {
    "preset": "paper",
    "timing_signal": None,
    "encoder_filters": [4, 4, 8, 8, 8],
    "embedding_dim": 8,
    "decoder_units": 16,
    "attention_units": 8,
    "deep_output_units": 12,
    "init_units": 6,
}


@pytest.mark.parametrize("variant", ["nopool", "strips"])
def test_the_paper_preset_trains_on_its_canvas_and_predicts_like_evaluate(
    variant, tiny_shards, tmp_path
):
    """Every image centred on the 128 x 1088 canvas in a 1-px frame, in training, in evaluate's
    decoding and in predict, which agree image by image."""
    settings = tiny_settings(variant, max_steps=4)
    settings["model"] = {"variant": variant, **PAPER_SHAPED}
    cmd = train_command(tiny_shards, tmp_path, variant)
    cmd[cmd.index("--settings") + 1] = json.dumps(settings)
    log = run_train(cmd, tmp_path)
    assert "train 0" not in log and "done at step 4" in log
    exported = bundle.load(tmp_path / "model")
    assert exported.canvas == (128, 1088, 1)
    test_paths = shard_paths(tiny_shards / "shards", "test")
    one_by_one = decode.DecodeSettings(exported.max_len, beam_width=1, batch_size=1)
    expected = decode.decode_split(exported, test_paths, one_by_one).predictions
    rows = [r for p in test_paths for r in pq.read_table(p, columns=["id", "png"]).to_pylist()]
    files = []
    for row in rows:
        files.append(tmp_path / f"{row['id']}.png")
        files[-1].write_bytes(row["png"])
    settings_in = predict.ModelInput.of(exported, precropped=True)
    image = predict.prepare_image(rows[0]["png"], settings_in)
    assert image.shape == (130, 1090, 1)
    got = predict.predict_paths(files, exported.model, exported.vocab, settings_in, one_by_one)
    assert [p.latex for p in got] == [expected[row["id"]] for row in rows]


def test_the_paper_preset_steps_on_two_logical_cpu_devices(tiny_shards, tmp_path):
    """MirroredStrategy over two replicas with the published graph (at test sizes)."""
    settings = tiny_settings("nopool", max_steps=2, batch_size=4)
    settings["model"] = {"variant": "nopool", **PAPER_SHAPED}
    cmd = train_command(tiny_shards, tmp_path, "nopool")
    cmd[cmd.index("--settings") + 1] = json.dumps(settings)
    log = run_train(cmd, tmp_path, tool_env() | {"PIPELINE_CPU_DEVICES": "2"})
    assert "2 replica(s)" in log and "done at step 2" in log
