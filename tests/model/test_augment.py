"""Training-image augmentation: each kind changes what it should and nothing else, by a seed;
off, and for validation, the input pipeline is exactly the plain one."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from pipeline import config
from pipeline.config import AugmentSettings, ConfigError
from pipeline.contracts import SHARD_SCHEMA, sha256_file, shard_paths, write_manifest
from pipeline.model import augment, dataset
from pipeline.model.trainer import Trainer, preprocessing_of, run_key
from tests.conftest import tiny_settings
from tests.model.test_dataset import make_row

KINDS = [f.name.removeprefix("p_") for f in fields(AugmentSettings) if f.name.startswith("p_")]
GEOMETRY = {"scale", "aspect", "rotate", "shift"}


def formula_ink(height: int = 24, width: int = 60) -> tf.Tensor:
    """A made-up formula's ink: anti-aliased strokes with white margins, as crop leaves them."""
    ink = np.zeros((height, width), np.uint8)
    ink[6:18, 6:8] = 255  # a vertical bar
    ink[11:13, 12:40] = 255  # a fraction line
    ink[5:9, 20:30] = 170  # a gray, anti-aliased blob
    ink[15:19, 44:54] = 90
    return tf.constant(ink[:, :, None])


def run(ink: tf.Tensor, settings: AugmentSettings, seed: int = 0, row: str = "a", **limits):
    key = augment.row_key(seed, tf.constant(row))
    return augment.augment_ink(ink, key, settings, **limits).numpy()


def only(kind: str, **more) -> AugmentSettings:
    return AugmentSettings(**{f"p_{kind}": 1.0} | more)


def test_every_kind_is_in_params_yaml_and_off_by_default():
    assert set(KINDS) == set(augment.STREAMS)
    assert not AugmentSettings().active and only("blur").active
    with pytest.raises(ConfigError, match="augment.p_jpeg = 2.0: must be a probability"):
        config.section("augment", {"p_jpeg": 2.0})
    with pytest.raises(ConfigError, match="jpeg_quality = \\[0, 90\\]: must be within"):
        config.section("augment", {"jpeg_quality": [0, 90]})


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_changes_the_image_by_its_seed_and_only_as_it_should(kind):
    ink = formula_ink()
    out = run(ink, only(kind))
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 1
    if kind in GEOMETRY:
        assert out.shape != ink.shape or not np.array_equal(out, ink.numpy())
        assert abs(int(out.astype(int).sum()) / int(ink.numpy().sum()) - 1) < 0.5  # ink kept
    else:
        assert out.shape == ink.shape and not np.array_equal(out, ink.numpy())
    np.testing.assert_array_equal(out, run(ink, only(kind)))  # same seed and row, same image
    other_seed, other_row = run(ink, only(kind), seed=1), run(ink, only(kind), row="b")
    assert not (np.array_equal(out, other_seed) and np.array_equal(out, other_row))


def test_probability_zero_is_the_identity_and_never_applies():
    ink = formula_ink()
    every = AugmentSettings(**{f"p_{k}": 0.0 for k in KINDS})
    np.testing.assert_array_equal(run(ink, every), ink.numpy())
    # a kind at p=0 beside another at 1: the other alone, with the same draws as when alone
    np.testing.assert_array_equal(run(ink, only("noise", p_rotate=0.0)), run(ink, only("noise")))


def test_kinds_keep_to_their_meaning():
    ink = formula_ink()
    plain = ink.numpy().astype(int)
    binary = run(ink, only("binarize"))
    assert set(np.unique(binary)) <= {0, 255}
    paper = run(ink, only("background")).astype(int)
    assert paper.min() > 0 or plain.min() > 0  # a floor under the background
    assert (paper[plain == 0] == paper[plain == 0][0]).all()  # the floor is even
    noisy = run(ink, only("noise")).astype(int)
    assert (noisy != plain).mean() > 0.2 and abs(noisy - plain).mean() < 40
    bigger = run(ink, only("scale", scale_range=(1.4, 1.5)))
    assert bigger.shape[0] > ink.shape[0] * 1.3 and bigger.shape[1] > ink.shape[1] * 1.3


def test_geometry_stays_within_a_canvas_or_a_fixed_height():
    ink = formula_ink()
    grow = AugmentSettings(p_scale=1.0, scale_range=(1.5, 2.0), p_rotate=1.0, p_shift=1.0)
    for seed in range(4):
        out = run(ink, grow, seed=seed, max_height=28, max_width=64)
        assert out.shape[0] <= 28 and out.shape[1] <= 64
        assert run(ink, grow, seed=seed, max_height=26).shape[0] <= 26


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("augment-shards")
    rng = np.random.default_rng(1)
    rows = [make_row(i, rng) for i in range(12)]
    manifest = []
    for name, split, part in (("train-0000.parquet", "train", rows[:8]),):
        pq.write_table(pa.Table.from_pylist(part, schema=SHARD_SCHEMA), root / name)
        sha = sha256_file(root / name)
        manifest.append({"path": name, "split": split, "rows": len(part), "sha256": sha})
    write_manifest(root, manifest)
    return shard_paths(root, "train")


def images_of(paths, **kwargs) -> tuple[list[np.ndarray], list]:
    """Every image (cut to its own size) and the (ids, tokens) of each batch, in order."""
    kwargs = {"batch_size": 4, "pad_multiple": 4, "with_ids": True} | kwargs
    images, labels = [], []
    for batch, tokens, ids in dataset.make_dataset(paths, **kwargs):
        images += [np.trim_zeros(np.trim_zeros(im[:, :, 0], "b").T, "b") for im in batch.numpy()]
        labels.append((ids.numpy().tolist(), tokens.numpy().tolist()))
    return images, labels


def same(a: list[np.ndarray], b: list[np.ndarray]) -> list[bool]:
    return [x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b, strict=True)]


def test_the_input_pipeline_augments_images_only_and_by_its_seed(shards):
    lively = AugmentSettings(**{f"p_{k}": 0.5 for k in KINDS})
    plain, labels = images_of(shards, seed=3)
    off, off_labels = images_of(shards, seed=3, augment=AugmentSettings())
    assert all(same(plain, off)) and off_labels == labels  # off: the plain pipeline
    on, on_labels = images_of(shards, seed=3, augment=lively)
    assert on_labels == labels  # the same rows, order and labels
    assert sum(same(plain, on)) <= len(plain) // 2
    next_epoch, _ = images_of(shards, seed=4, augment=lively)  # (the same seed: a unit test)
    assert not all(same(on, next_epoch))


def test_the_trainer_augments_training_batches_and_never_validation(tiny_shards):
    params = config.parse(tiny_settings())
    lively = AugmentSettings(**{f"p_{k}": 1.0 for k in KINDS})
    trainer = Trainer(
        params.model,
        params.train,
        tiny_shards / "shards",
        tiny_shards / "vocab.json",
        preprocessing_of(params),
        lively,
    )
    val_paths = shard_paths(tiny_shards / "shards", "validation")
    plain_val = dataset.make_dataset(val_paths, batch_size=8, pad_multiple=trainer.pad_multiple)
    for (a, s), (b, t) in zip(trainer._val_data(), plain_val, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        np.testing.assert_array_equal(s.numpy(), t.numpy())
    plain_train = dataset.make_dataset(
        trainer.train_paths, batch_size=8, pad_multiple=trainer.pad_multiple, shuffle=True
    )
    (a, s), (b, t) = next(iter(trainer.train_data(0, 0))), next(iter(plain_train))
    np.testing.assert_array_equal(s.numpy(), t.numpy())
    assert a.shape != b.shape or not np.array_equal(a.numpy(), b.numpy())
    off = run_key(params.model, params.train, "d")
    assert run_key(params.model, params.train, "d", AugmentSettings()) == off
    assert run_key(params.model, params.train, "d", lively) != off
