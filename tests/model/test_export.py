"""The export command: a SavedModel that decodes as predict does, loaded without this repository."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline import cli
from pipeline.contracts import shard_paths
from pipeline.model import bundle, export, predict
from pipeline.model.decode import DecodeSettings
from tests.conftest import ROOT, tool_env

BEAM = 3

# Run in a fresh interpreter, outside the repository, where importing this project fails: what a
# user of the export has. It decodes each batch of images and writes what the signature gives.
LOADER = """
import importlib.abc, json, sys

class NoProject(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "pipeline" or name.startswith("pipeline."):
            raise ImportError(f"the export must not need this repository ({name})")

sys.meta_path.insert(0, NoProject())
import numpy as np
import tensorflow as tf

folder, batches, out = sys.argv[1:]
model = tf.saved_model.load(folder)
decode = model.signatures["serving_default"]
about = json.loads(model.signatures["describe"]()["json"].numpy())
results = []
with np.load(batches) as arrays:
    for name in sorted(arrays.files):
        got = decode(images=tf.constant(arrays[name]))
        results.append({
            "latex": [s.decode() for s in got["latex"].numpy()],
            "ids": got["ids"].numpy().tolist(),
            "scores": got["scores"].numpy().tolist(),
        })
multiple = about["inputs"]["pad_multiple"]
try:
    decode(images=tf.zeros([1, multiple, multiple + 1, 1]))
    refusal = None
except tf.errors.InvalidArgumentError as error:
    refusal = error.message
project = [m for m in sys.modules if m == "pipeline" or m.startswith("pipeline.")]
record = {"results": results, "about": about, "refusal": refusal, "project_modules": project}
json.dump(record, open(out, "w"))
"""


@pytest.fixture(scope="module")
def model_dir(trained_tiny) -> Path:
    work, _ = trained_tiny
    return work / "model"


@pytest.fixture(scope="module")
def exported(model_dir, tmp_path_factory) -> tuple[Path, str]:
    """The tiny model exported by the command, as a user runs it (verbose: TF's raw stderr)."""
    out = tmp_path_factory.mktemp("export") / "saved"
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "export", "--model", str(model_dir), str(out)]
        + ["--beam-width", str(BEAM), "--verbose"],
        cwd=ROOT,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stderr


def test_a_fresh_process_without_the_repository_decodes_as_predict(
    exported, model_dir, tiny_shards, tmp_path
):
    folder, stderr = exported
    assert "export: model" in stderr and "export: 1 SavedModel out" in stderr
    loaded = bundle.load(model_dir)
    settings = predict.ModelInput.of(loaded, precropped=True)
    paths = []
    for row in pq.read_table(shard_paths(tiny_shards / "shards", "test")[0]).to_pylist():
        paths.append(tmp_path / f"{row['id']}.png")
        paths[-1].write_bytes(row["png"])
    decoding = DecodeSettings(max_len=loaded.max_len, beam_width=BEAM, batch_size=64)
    expected = predict.predict_paths(paths, loaded.model, loaded.vocab, settings, decoding)
    # the same images predict decodes, batched by shape as predict batches them
    by_shape: dict[tuple[int, ...], list[int]] = {}
    images = [predict.prepare_image(p.read_bytes(), settings) for p in paths]
    for index, image in enumerate(images):
        by_shape.setdefault(image.shape, []).append(index)
    order = [by_shape[shape] for shape in sorted(by_shape)]
    batches = {f"{n:03d}": np.stack([images[i] for i in rows]) for n, rows in enumerate(order)}
    np.savez(tmp_path / "batches.npz", **batches)
    env = tool_env() | {"PYTHONNOUSERSITE": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", LOADER, str(folder), "batches.npz", "out.json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads((tmp_path / "out.json").read_text())
    assert got["project_modules"] == []
    assert got["about"]["decoding"]["beam_width"] == BEAM
    assert got["about"]["vocabulary"] == loaded.vocab.tokens
    assert got["about"]["inputs"]["pad_multiple"] == loaded.pad_multiple
    assert f"padded to multiples of {loaded.pad_multiple} px" in got["refusal"]
    latex, scores = {}, {}
    for rows, result in zip(order, got["results"], strict=True):
        for i, text, score in zip(rows, result["latex"], result["scores"], strict=True):
            latex[i], scores[i] = text, score
    assert [latex[i] for i in range(len(paths))] == [p.latex for p in expected]
    np.testing.assert_allclose(
        [scores[i] for i in range(len(paths))], [p.score for p in expected], rtol=1e-4, atol=1e-4
    )


def test_verbose_shows_tensorflows_start_up_lines(exported):
    """On this platform TensorFlow announces oneDNN at import; --verbose lets it through."""
    _, stderr = exported
    assert any(cli.STARTUP_NOISE.match(line) for line in stderr.splitlines())


def test_an_existing_folder_is_not_overwritten(model_dir, tmp_path):
    (tmp_path / "keep.txt").write_text("a user's file")
    with pytest.raises(SystemExit) as exit_info:
        export.main(["--model", str(model_dir), str(tmp_path)])
    assert exit_info.value.code == 2
    assert (tmp_path / "keep.txt").read_text() == "a user's file"
