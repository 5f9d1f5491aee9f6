"""The predict command: training-identical preprocessing, per-file errors, the CLI contract."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline import cli, config
from pipeline.config import CropSettings, RenderSettings
from pipeline.contracts import shard_paths
from pipeline.corpus import crop, render
from pipeline.model import bundle, dataset, decode, predict
from pipeline.model.decode import DecodeSettings, decode_batch
from pipeline.model.networks import FormulaModel
from tests.conftest import ROOT, TINY_PREPROCESSING, tool_env

GREEDY = {"beam_width": 1, "batch_size": 4}


@pytest.fixture(scope="module")
def model_dir(trained_tiny) -> Path:
    """The tiny model as the train stage exports it, with the preprocessing it was trained on."""
    work, _ = trained_tiny
    return work / "model"


@pytest.fixture(scope="module")
def loaded(model_dir) -> bundle.Bundle:
    return bundle.load(model_dir)


@pytest.fixture(scope="module")
def settings(loaded) -> predict.ModelInput:
    return predict.ModelInput.of(loaded)


@pytest.fixture(scope="module")
def test_rows(tiny_shards) -> list[dict]:
    """The test split's rows (id, png) in shard order, with each row's formula."""
    paths = shard_paths(tiny_shards / "shards", "test")
    rows = [r for p in paths for r in pq.read_table(p, columns=["id", "png"]).to_pylist()]
    formulas = pq.read_table(tiny_shards / "formulas.parquet", columns=["id", "formula"])
    by_id = dict(zip(formulas["id"].to_pylist(), formulas["formula"].to_pylist(), strict=True))
    return [r | {"formula": by_id[r["id"]]} for r in rows]


@pytest.fixture(scope="module")
def raw_page(test_rows) -> tuple[dict, bytes]:
    """A test formula rendered afresh as the render stage does: an uncropped page."""
    row = test_rows[0]
    [result] = render.render_formulas([(row["id"], row["formula"])], RenderSettings(dpi=100))
    assert result.status == "ok", result.error
    return row, result.png


def decoding(loaded, **overrides) -> DecodeSettings:
    return DecodeSettings(max_len=loaded.max_len, **(GREEDY | overrides))


def save(array: np.ndarray, path: Path, **options) -> Path:
    Image.fromarray(array).save(path, **options)
    return path


def zero_padded(ink: np.ndarray, multiple: int) -> np.ndarray:
    """Background (0) below and to the right, up to the next multiples: the training layout."""
    height, width = -(-ink.shape[0] // multiple) * multiple, -(-ink.shape[1] // multiple) * multiple
    out = np.zeros((height, width, 1), np.float32)
    out[: ink.shape[0], : ink.shape[1]] = ink
    return out


def gray_of(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"))


# --- preprocessing matches training ----------------------------------------------------------


def test_shard_images_get_the_training_tensors_and_the_evaluate_tokens(
    tiny_shards, loaded, test_rows, tmp_path
):
    """Batch size 1 makes tf.data pad each image only to pad_multiple, as predict does when not
    padding to buckets."""
    model, vocab = loaded.model, loaded.vocab
    paths = shard_paths(tiny_shards / "shards", "test")
    data = dataset.make_dataset(
        paths, batch_size=1, pad_multiple=loaded.pad_multiple, with_ids=True
    )
    cropped = replace(predict.ModelInput.of(loaded, precropped=True), pad_to_bucket=False)
    max_len = loaded.max_len
    by_id = {row["id"]: row for row in test_rows}
    for images, _, ids in data:
        mine = predict.prepare_image(by_id[ids[0].numpy().decode()]["png"], cropped)
        np.testing.assert_array_equal(mine, images.numpy()[0])
        expected, _ = model.greedy_decode(images, max_len)
        got, scores, _ = decode_batch(model, mine[None], decoding(loaded))
        np.testing.assert_array_equal(got, expected.numpy())
        assert scores is None

    files = [tmp_path / f"{i:02d}.png" for i in range(len(test_rows))]
    for file, row in zip(files, test_rows, strict=True):
        file.write_bytes(row["png"])
    predictions = predict.predict_paths(files, model, vocab, cropped, decoding(loaded))
    one_by_one = decode.DecodeSettings(max_len, beam_width=1, batch_size=1)
    expected = decode.decode_split(loaded, paths, one_by_one).predictions
    assert [p.path for p in predictions] == [str(f) for f in files]
    assert [p.latex for p in predictions] == [expected[row["id"]] for row in test_rows]
    assert all(p.error is None and p.score is None for p in predictions)


def test_a_raw_rendered_page_is_cropped_like_the_crop_stage(raw_page, settings):
    row, page = raw_page
    image = predict.prepare_image(page, replace(settings, pad_to_bucket=False))
    in_bucket = predict.prepare_image(page, settings)
    np.testing.assert_array_equal(in_bucket[: image.shape[0], : image.shape[1]], image)
    assert in_bucket[image.shape[0] :].max(initial=0) == 0 == in_bucket[:, image.shape[1] :].max()
    stage = crop.encode_png(crop.crop_image(page, settings.crop))
    expected = zero_padded(dataset.preprocess_png(stage), settings.pad_multiple)
    np.testing.assert_array_equal(image, expected)
    # and it is the very tensor the shard holds for this formula
    shard = zero_padded(dataset.preprocess_png(row["png"]), settings.pad_multiple)
    np.testing.assert_array_equal(image, shard)
    assert image.shape[0] < gray_of(page).shape[0] + 2 * settings.crop.pad  # downsampled


def test_a_screenshot_at_2x_zoom_reaches_the_model_like_the_page(raw_page, settings, tmp_path):
    """README's example: the formula drawn at twice the model's dpi (a Retina screenshot) by
    default, or with its scale given, becomes nearly the model's own input for the page."""
    row, page = raw_page
    [zoomed] = render.render_formulas([(row["id"], row["formula"])], RenderSettings(dpi=200))
    plain = predict.prepare_image(page, replace(settings, pad_to_bucket=False))
    for given in (None, 200.0):
        shot = replace(settings, pad_to_bucket=False, input_dpi=given)
        image = predict.prepare_image(zoomed.png, shot)
        height, width = plain.shape[0], plain.shape[1]
        assert abs(image.shape[0] - height) <= 4 and abs(image.shape[1] - width) <= 8, given
        common = np.s_[: min(height, image.shape[0]), : min(width, image.shape[1])]
        assert np.abs(image[common] - plain[common]).mean() < 0.1, given
    as_is = predict.prepare_image(zoomed.png, replace(settings, normalize=False))
    assert as_is.shape[1] > 1.8 * plain.shape[1]  # what predict gave before: twice too large


def test_a_transparent_background_reads_as_white(raw_page, settings, loaded, tmp_path):
    _, page = raw_page
    ink = 255 - gray_of(page)
    black = np.zeros_like(ink)
    rgba = np.dstack([black, black, black, ink])  # black ink, the rest see-through
    on_white = save(gray_of(page), tmp_path / "white.png")
    transparent = save(rgba, tmp_path / "rgba.png")
    gray_alpha = save(np.dstack([black, ink]), tmp_path / "la.png")
    assert gray_of(transparent.read_bytes()).max() == 0  # a plain convert("L") sees all black
    expected = predict.prepare_image(on_white.read_bytes(), settings)
    for file in (transparent, gray_alpha):
        np.testing.assert_array_equal(predict.prepare_image(file.read_bytes(), settings), expected)
    model, vocab = loaded.model, loaded.vocab
    white, rgba_p, la_p = predict.predict_paths(
        [on_white, transparent, gray_alpha], model, vocab, settings, decoding(loaded)
    )
    assert white.error is None and rgba_p.latex == white.latex == la_p.latex


def test_jpeg_input_is_read_like_the_png(raw_page, settings, loaded, tmp_path):
    _, page = raw_page
    jpeg = save(gray_of(page), tmp_path / "page.jpg", quality=98)
    assert Image.open(jpeg).format == "JPEG"
    image = predict.prepare_image(jpeg.read_bytes(), settings)
    reference = predict.prepare_image(page, settings)
    assert image.shape == reference.shape
    assert np.abs(image - reference).mean() < 0.01
    model, vocab = loaded.model, loaded.vocab
    [result] = predict.predict_paths([jpeg], model, vocab, settings, decoding(loaded))
    assert result.error is None and isinstance(result.latex, str)


# --- per-file errors --------------------------------------------------------------------------


def bad_and_good_files(raw_page, folder: Path) -> dict[str, Path]:
    """One file of each kind the command must handle, keyed by what it is."""
    _, page = raw_page
    files = {"good": folder / "good.png", "corrupt": folder / "corrupt.png"}
    files["good"].write_bytes(page)
    files["corrupt"].write_bytes(page[: len(page) // 2])
    files["text"] = folder / "notes.png"
    files["text"].write_text("this is not an image\n")
    files["missing"] = folder / "missing.png"
    files["blank"] = save(np.full((40, 120), 255, np.uint8), folder / "blank.png")
    # at the model's dpi (the command is told so), as a block of ink would otherwise be read
    # as a formula at a huge dpi and shrunk
    huge = np.full((220, 1220), 255, np.uint8)
    huge[10:210:3, 10:1210] = huge[209, 10:1210] = 0  # ruled lines on white paper:
    # ink 200 x 1200 -> padded 216 x 1216 -> downsampled 108 x 608
    files["huge"] = save(huge, folder / "huge.png")
    files["jpeg"] = save(gray_of(page), folder / "good.jpeg", quality=95)
    return files


def test_cli_reports_each_bad_file_and_predicts_the_rest(raw_page, model_dir, tmp_path):
    files = bad_and_good_files(raw_page, tmp_path)
    folder, empty = tmp_path / "folder", tmp_path / "empty"
    folder.mkdir(), empty.mkdir()
    for name in ("b.png", "a.PNG", "c.jpg"):
        shutil.copy(files["good"] if name != "c.jpg" else files["jpeg"], folder / name)
    (folder / "readme.txt").write_text("skipped: not an image suffix")
    args = [str(p) for p in files.values()] + [str(folder), str(empty)]
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "predict", "--model", str(model_dir)]
        + ["--beam-width", "1", "--jsonl", "--batch-size", "2", "--dpi", "100", *args],
        cwd=ROOT,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    expected_paths = (
        [str(p) for p in files.values()]
        + [str(folder / n) for n in ("a.PNG", "b.png", "c.jpg")]
        + [str(empty)]
    )
    assert [r["path"] for r in records] == expected_paths
    by_path = {r["path"]: r for r in records}
    errors = {kind: by_path[str(path)]["error"] for kind, path in files.items()}
    assert errors["good"] is None and errors["jpeg"] is None
    assert "corrupt or truncated" in errors["corrupt"]
    assert errors["text"] == "not a PNG or JPEG image"
    assert errors["missing"] == "no such file"
    assert "no ink" in errors["blank"]
    assert "108x608" in errors["huge"] and "at most 64x512" in errors["huge"]
    assert "100 dpi" in errors["huge"]
    assert "no .png, .jpg or .jpeg files" in by_path[str(empty)]["error"]
    good = [r for r in records if r["error"] is None]
    assert len(good) == 5 and all(isinstance(r["latex"], str) and "score" not in r for r in good)
    assert by_path[str(folder / "b.png")]["latex"] == by_path[str(files["good"])]["latex"]
    for record in records:
        if record["error"] is not None:
            assert record["latex"] is None
            assert f"{record['path']}: error: {record['error']}" in proc.stderr
    assert "11 images in, 5 predicted, 6 failed" in proc.stderr
    assert "Traceback" not in proc.stderr
    # quiet by default: none of TensorFlow's start-up lines (--verbose: tests/model/test_export)
    assert not [line for line in proc.stderr.splitlines() if cli.STARTUP_NOISE.match(line)]
    assert "oneDNN" not in proc.stderr and "absl" not in proc.stderr


def test_text_output_is_path_tab_latex_in_input_order(raw_page, model_dir, tmp_path, capsys):
    _, page = raw_page
    first, second = tmp_path / "z.png", tmp_path / "a.png"
    first.write_bytes(page)
    save(gray_of(page), second)
    code = predict.main(["--model", str(model_dir), "--beam-width", "1", str(first), str(second)])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert [line.split("\t")[0] for line in out] == [str(first), str(second)]
    assert all(len(line.split("\t")) == 2 for line in out)


def test_usage_errors_exit_2_with_a_clear_message(tmp_path):
    image = save(np.zeros((8, 8), np.uint8), tmp_path / "x.png")
    cases = [
        (["--model", str(tmp_path / "nowhere")], "model folder"),
        (["--model", str(tmp_path)], "lacks model.json, vocab.json, model.weights.h5"),
        (["--model", str(tmp_path), "--beam-width", "0"], "--beam-width must be at least 1"),
    ]
    for options, message in cases:
        proc = subprocess.run(
            [sys.executable, "-m", "pipeline", "predict", *options, str(image)],
            cwd=ROOT,
            env=tool_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and "Traceback" not in proc.stderr


# --- beam search ------------------------------------------------------------------------------


@pytest.mark.skipif(
    not hasattr(FormulaModel, "beam_decode"), reason="FormulaModel.beam_decode not there yet"
)
def test_beam_search_gives_a_score_per_image(raw_page, settings, loaded, tmp_path):
    _, page = raw_page
    files = [tmp_path / "a.png", tmp_path / "b.png"]
    for file in files:
        file.write_bytes(page)
    model, vocab = loaded.model, loaded.vocab
    beam = decoding(loaded, beam_width=3, length_penalty=0.6)
    results = predict.predict_paths(files, model, vocab, settings, beam)
    assert all(r.error is None and isinstance(r.latex, str) for r in results)
    assert all(r.score is not None and np.isfinite(r.score) for r in results)
    assert results[0].as_json()["score"] == results[0].score
    image = predict.prepare_image(page, settings)
    ids, scores, _ = model.beam_decode(image[None], beam.max_len, 3, 0.6)
    assert results[0].latex == vocab.decode(np.asarray(ids)[0].tolist())


def test_tried_scales_keep_the_best_scored_output(raw_page, settings, loaded, tmp_path):
    _, page = raw_page
    (tmp_path / "a.png").write_bytes(page)
    model, vocab = loaded.model, loaded.vocab
    beam = decoding(loaded, beam_width=3, length_penalty=0.6)
    tries = replace(settings, scale_tries=predict.SCALE_TRIES)
    images = predict.prepare_tries(page, tries)
    assert len(images) == 3 and not np.array_equal(images[1], images[2])  # 0.85x, 1.18x
    alone = [
        predict.predict_paths([tmp_path / "a.png"], model, vocab, replace(settings, scale=t), beam)
        for t in predict.SCALE_TRIES
    ]
    [best] = predict.predict_paths([tmp_path / "a.png"], model, vocab, tries, beam)
    assert best == max((r for [r] in alone), key=lambda r: r.score)
    placeholder, failed = predict.Prediction("a"), predict.Prediction("a", error="oom")
    assert predict.better(placeholder, failed) == failed
    assert predict.better(failed, best) == best == predict.better(best, failed)


# --- small rules, no model needed -------------------------------------------------------------


def test_the_model_records_the_preprocessing_of_its_training_images(loaded, settings):
    assert loaded.preprocessing.as_dict() == TINY_PREPROCESSING
    assert settings.dpi == TINY_PREPROCESSING["dpi"]
    assert settings.crop == config.section("crop", TINY_PREPROCESSING["crop"])


@pytest.mark.parametrize("damage", ["truncated weights", "altered vocabulary"])
def test_a_damaged_model_is_refused_by_name_without_a_traceback(
    raw_page, model_dir, tmp_path, damage
):
    broken = tmp_path / "model"
    shutil.copytree(model_dir, broken)
    if damage == "truncated weights":
        name, data = bundle.WEIGHTS, (broken / bundle.WEIGHTS).read_bytes()
        (broken / name).write_bytes(data[: len(data) // 2])
    else:
        name = bundle.VOCAB
        (broken / name).write_text((broken / name).read_text().replace('"x"', '"y"', 1) + " ")
    image = tmp_path / "x.png"
    image.write_bytes(raw_page[1])
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "predict", "--model", str(broken), str(image)],
        cwd=ROOT,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"{broken / name} is not the file model.json records" in proc.stderr
    assert "dvc repro train" in proc.stderr and "Traceback" not in proc.stderr


def test_a_model_that_records_no_preprocessing_is_refused(model_dir, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(model_dir, old)
    record = json.loads((old / bundle.RECORD).read_text())
    del record["preprocessing"]
    (old / bundle.RECORD).write_text(json.dumps(record))
    with pytest.raises(bundle.BundleError, match="records no preprocessing"):
        bundle.load(old)


def test_strips_images_pad_to_the_fixed_height_and_refuse_taller_ones():
    # blocks of ink, not formulas: screenshot normalization would read them as huge print
    crop_only = CropSettings(pad=0, downsample=1)
    settings = predict.ModelInput(crop_only, 4, fixed_height=16, dpi=100, normalize=False)
    short, tall = np.full((20, 30), 255, np.uint8), np.full((40, 30), 255, np.uint8)
    short[2:9, 3:20] = 0
    tall[2:30, 3:20] = 0
    buffer = io.BytesIO()
    Image.fromarray(short).save(buffer, format="PNG")
    image = predict.prepare_image(buffer.getvalue(), replace(settings, pad_to_bucket=False))
    assert image.shape == (16, 20, 1)
    assert image[:7, :17].min() == 1.0 and image[7:].max() == 0.0 == image[:, 17:].max()
    in_bucket = predict.prepare_image(buffer.getvalue(), settings)  # the 32x192 bucket's width
    assert in_bucket.shape == (16, 192, 1)
    np.testing.assert_array_equal(in_bucket[:, :20], image)
    buffer = io.BytesIO()
    Image.fromarray(tall).save(buffer, format="PNG")
    message = "28x17 .* taller than the model's fixed height 16"
    with pytest.raises(predict.ImageError, match=message):
        predict.prepare_image(buffer.getvalue(), settings)


def test_size_limits_name_every_bucket_when_none_holds_the_others():
    nested = crop.ordered_buckets([(32, 128), (64, 256)])
    assert predict._limits(nested) == "at most 64x256"
    crossed = crop.ordered_buckets([(16, 1024), (128, 256)])
    assert predict._limits(crossed) == "only sizes within one of 16x1024, 128x256"


def test_only_regular_files_are_read_and_their_size_is_checked_first(
    raw_page, settings, loaded, tmp_path
):
    """A FIFO would block forever, /dev/zero never ends, a 1 GiB file would be read whole."""
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as handle:
        handle.truncate(2**30)  # sparse: takes no disk space
    good = tmp_path / "good.png"
    good.write_bytes(raw_page[1])
    folder = tmp_path / "folder"
    folder.mkdir()
    shutil.copy(good, folder / "a.png")
    os.mkfifo(folder / "b.png")
    inputs = [fifo, Path("/dev/zero"), huge, good, folder]
    results = predict.predict_paths(inputs, loaded.model, loaded.vocab, settings, decoding(loaded))
    by_path = {r.path: r for r in results}
    assert [r.path for r in results] == [str(p) for p in inputs[:4]] + [
        str(folder / "a.png"),
        str(folder / "b.png"),
    ]
    for path in (fifo, "/dev/zero", folder / "b.png"):
        assert by_path[str(path)].error.startswith("not a regular file"), path
    assert by_path[str(huge)].error == "file is 1073741824 bytes, over the 64 MiB limit"
    assert by_path[str(good)].error is None and by_path[str(folder / "a.png")].error is None
    assert by_path[str(good)].latex == by_path[str(folder / "a.png")].latex


def test_mixed_sizes_decode_in_full_batches_each_as_it_would_alone(
    tiny_shards, loaded, test_rows, tmp_path, monkeypatch
):
    """Padding to buckets gives a few shapes, so a folder of mixed sizes fills its batches;
    each image's result is still the one it gets decoded on its own."""
    files = []
    for i, row in enumerate(test_rows * 3):  # a larger folder, sizes in no particular order
        files.append(tmp_path / f"{i:03d}.png")
        files[-1].write_bytes(row["png"])
    cropped = predict.ModelInput.of(loaded, precropped=True)
    calls = []
    real = predict.decode_batch
    monkeypatch.setattr(
        predict,
        "decode_batch",
        lambda m, images, s: calls.append(len(images)) or real(m, images, s),
    )
    batch = decoding(loaded, batch_size=8)
    together = predict.predict_paths(files, loaded.model, loaded.vocab, cropped, batch)
    shapes = {predict._read(f, cropped).shape for f in files}
    assert len(calls) <= len(files) // 8 + len(shapes)  # full batches but one per shape
    assert sum(calls) == len(files)
    alone = [
        predict.predict_paths([f], loaded.model, loaded.vocab, cropped, batch)[0] for f in files
    ]
    assert [p.latex for p in together] == [p.latex for p in alone]
    assert all(p.error is None for p in together)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--dpi", "0"], "--dpi must be between 10 and 5000, got 0"),
        (["--dpi", "nan"], "--dpi must be between 10 and 5000, got nan"),
        (["--dpi", "150", "--as-is"], "not allowed with argument --dpi"),
    ],
)
def test_a_given_dpi_is_checked_before_the_model_is_loaded(options, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_status:
        predict.main(["--model", str(tmp_path / "nowhere"), *options, "x.png"])
    assert exit_status.value.code == 2
    assert message in capsys.readouterr().err
