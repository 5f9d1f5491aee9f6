"""The exported model: weights, vocabulary and the settings its inputs were made with.

The train stage writes a bundle and ``predict``, ``evaluate`` and the benchmarks read one, all
through this module, the only place that knows the folder's file names. A bundle carries what
is needed to feed the model exactly as in training (the render dpi, the crop settings, the
padding multiple), so a model is never given inputs shaped unlike its training data.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tensorflow as tf

from pipeline import config
from pipeline.config import CropSettings, ModelSettings, RenderSettings
from pipeline.contracts import Vocab, sha256_file
from pipeline.model import networks

WEIGHTS = "model.weights.h5"
VOCAB = "vocab.json"
RECORD = "model.json"
FILES = (RECORD, VOCAB, WEIGHTS)


class BundleError(SystemExit):
    """A folder that is not a usable exported model; the message says what is wrong."""


REMEDY = "train it again (`dvc repro train`) or restore it (`dvc pull` / `dvc checkout`)"


@dataclass(frozen=True)
class Preprocessing:
    """How the training images were made from formulas: render dpi, font and crop settings
    (a model recorded before fonts were a setting was trained in Computer Modern)."""

    dpi: int
    crop: CropSettings
    font: str = RenderSettings.font

    def as_dict(self) -> dict[str, Any]:
        return {"dpi": self.dpi, "font": self.font, "crop": config.as_dict(self.crop)}

    def render_settings(self) -> RenderSettings:
        """Render settings that draw a formula as the validation and test images were drawn."""
        return RenderSettings(dpi=self.dpi, font=self.font)


@dataclass(frozen=True)
class Bundle:
    model: networks.FormulaModel
    vocab: Vocab
    settings: ModelSettings
    preprocessing: Preprocessing
    max_len: int  # the longest token sequence training decoded (with <s> and </s>)
    record: dict[str, Any]  # model.json as written: also the step, epoch and validation score

    @property
    def pad_multiple(self) -> int:
        return self.model.config.size_multiple

    @property
    def fixed_height(self) -> int | None:
        return self.model.config.fixed_height

    @property
    def canvas(self) -> tuple[int, int, int] | None:
        return self.model.config.canvas


def export(
    folder: Path,
    model: networks.FormulaModel,
    vocab_file: Path,
    settings: ModelSettings,
    preprocessing: Preprocessing,
    max_len: int,
    extra: dict[str, Any],
) -> None:
    """Write a bundle; ``extra`` (e.g. step and validation score) goes into the record."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save_weights(str(folder / WEIGHTS))
    shutil.copyfile(vocab_file, folder / VOCAB)
    record = {
        "model": config.as_dict(settings),
        "preprocessing": preprocessing.as_dict(),
        "max_len": max_len,
        "sha256": {name: sha256_file(folder / name) for name in (VOCAB, WEIGHTS)},
    } | extra
    (folder / RECORD).write_text(json.dumps(record, indent=2) + "\n")


def read_record(folder: Path) -> dict[str, Any]:
    """What the bundle records (settings, step, epoch, validation score), without the model;
    the files it records are checked against their sha256 first."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BundleError(f"model folder {folder} not found (train one, or pass --model DIR)")
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise BundleError(
            f"model folder {folder} lacks {', '.join(missing)}: not an exported model"
        )
    try:
        record = json.loads((folder / RECORD).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BundleError(f"{folder / RECORD} is not valid JSON ({error}): {REMEDY}") from None
    for key in ("sha256", "preprocessing"):
        if not isinstance(record, dict) or key not in record:
            raise BundleError(f"{folder / RECORD} records no {key} (an older export): {REMEDY}")
    for name, digest in record["sha256"].items():
        if sha256_file(folder / name) != digest:
            raise BundleError(
                f"{folder / name} is not the file {RECORD} records (its sha256 differs: "
                f"modified or truncated): {REMEDY}"
            )
    return record


def load(folder: Path) -> Bundle:
    """The exported model with its vocabulary and settings, or a BundleError saying why not."""
    folder = Path(folder)
    record = read_record(folder)
    source = str(folder / RECORD)
    settings = config.section("model", record["model"], source)
    raw = record["preprocessing"]
    crop = config.section("crop", raw["crop"], source)
    font = config.section("render", {k: raw[k] for k in ("font",) if k in raw}, source).font
    preprocessing = Preprocessing(int(raw["dpi"]), crop, font)
    vocab = Vocab.load(folder / VOCAB)
    model = networks.build_model(networks.model_config(settings), len(vocab))
    try:
        model(_blank_batch(model.config), training=False)
        model.load_weights(str(folder / WEIGHTS))
    except (OSError, ValueError) as error:
        raise BundleError(f"cannot load the weights in {folder / WEIGHTS}: {error}") from None
    return Bundle(model, vocab, settings, preprocessing, int(record["max_len"]), record)


def _blank_batch(model_config: networks.ModelConfig) -> tuple[tf.Tensor, tf.Tensor]:
    if model_config.canvas is not None:  # the whole framed canvas: attention reads all of it
        height, width, frame = model_config.canvas
        return tf.zeros([1, height + 2 * frame, width + 2 * frame, 1]), tf.ones([1, 2], tf.int32)
    multiple = model_config.size_multiple
    height = model_config.fixed_height or multiple
    return tf.zeros([1, height, multiple, 1]), tf.ones([1, 2], tf.int32)
