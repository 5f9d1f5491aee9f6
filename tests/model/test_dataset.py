from __future__ import annotations

import io
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from PIL import Image

from pipeline.contracts import (
    MANIFEST,
    SHARD_SCHEMA,
    ShardError,
    sha256_file,
    shard_paths,
    write_manifest,
)
from pipeline.model import dataset

# (height, width) ranges per bucket: three buckets of clearly different sizes
BUCKET_SIZES = {0: ((8, 16), (20, 40)), 1: ((17, 30), (30, 70)), 2: ((31, 45), (60, 100))}
PAD_MULTIPLE = 4


def png_bytes(gray: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(gray.astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def make_row(index: int, rng: np.random.Generator) -> dict:
    bucket = index % 3
    (h_lo, h_hi), (w_lo, w_hi) = BUCKET_SIZES[bucket]
    height, width = int(rng.integers(h_lo, h_hi + 1)), int(rng.integers(w_lo, w_hi + 1))
    gray = np.full((height, width), 255, np.uint8)
    ink = rng.random((height, width)) < 0.3
    gray[ink] = rng.integers(0, 255, ink.sum())
    gray[0, 0] = 0  # a known full-ink pixel for the 1 = ink check
    if index == 0:  # every gray level once, so the numpy/tf comparison covers all 256 values
        height, width, gray = 16, 16, np.arange(256, dtype=np.uint8).reshape(16, 16)
        bucket = 0
    n_tokens = int(rng.integers(1, 9))
    return {
        "id": f"r{index:02d}",
        "png": png_bytes(gray),
        "height": height,
        "width": width,
        "bucket": bucket,
        "tokens": [int(t) for t in rng.integers(4, 50, n_tokens)],
        "formula": "x",
    }


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Two training shards (11 + 10 rows) and one validation shard, with a manifest."""
    root = tmp_path_factory.mktemp("shards")
    rng = np.random.default_rng(0)
    rows = [make_row(i, rng) for i in range(24)]
    layout = [
        ("train-0000.parquet", "train", rows[:11]),
        ("train-0001.parquet", "train", rows[11:21]),
    ]
    layout.append(("validation-0000.parquet", "validation", rows[21:]))
    manifest = []
    for name, split, part in layout:
        pq.write_table(pa.Table.from_pylist(part, schema=SHARD_SCHEMA), root / name)
        digest = sha256_file(root / name)
        manifest.append({"path": name, "split": split, "rows": len(part), "sha256": digest})
    write_manifest(root, manifest)
    return root, {r["id"]: r for r in rows[:21]}


def epoch(paths, **kwargs) -> list[tuple[np.ndarray, np.ndarray, list[str]]]:
    kwargs = {"batch_size": 4, "pad_multiple": PAD_MULTIPLE, "with_ids": True} | kwargs
    return [
        (images.numpy(), tokens.numpy(), [i.decode() for i in ids.numpy()])
        for images, tokens, ids in dataset.make_dataset(paths, **kwargs)
    ]


def test_shard_paths_follow_the_manifest(shards):
    root, _ = shards
    assert [p.name for p in shard_paths(root, "train")] == [
        "train-0000.parquet",
        "train-0001.parquet",
    ]
    assert [p.name for p in shard_paths(root, "validation")] == ["validation-0000.parquet"]
    assert dataset.count_rows(shard_paths(root, "train")) == 21


def test_missing_shard_is_named(shards, tmp_path):
    root, _ = shards
    for name in (MANIFEST, "train-0000.parquet"):
        (tmp_path / name).write_bytes((root / name).read_bytes())
    with pytest.raises(ShardError, match="train-0001.parquet is listed .* but missing: rebuild"):
        shard_paths(tmp_path, "train")
    with pytest.raises(ShardError, match="manifest"):
        shard_paths(tmp_path / "nowhere", "train")


def test_an_altered_or_truncated_shard_is_refused_by_name(shards, tmp_path):
    """Still valid Parquet, other tokens: trained on silently unless the checksum is read."""
    root, _ = shards
    for name in (MANIFEST, "train-0000.parquet", "train-0001.parquet"):
        (tmp_path / name).write_bytes((root / name).read_bytes())
    table = pq.read_table(tmp_path / "train-0001.parquet").to_pylist()
    table[0]["tokens"] = [5, 5, 5]
    pq.write_table(
        pa.Table.from_pylist(table, schema=SHARD_SCHEMA), tmp_path / "train-0001.parquet"
    )
    with pytest.raises(ShardError, match=r"train-0001.parquet is not the file .* `dvc repro"):
        shard_paths(tmp_path, "train")
    data = (root / "train-0000.parquet").read_bytes()
    (tmp_path / "train-0000.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(ShardError, match=r"train-0000.parquet is not the file .*truncated"):
        shard_paths(tmp_path, "train")


def test_batches_keep_the_contract(shards):
    root, rows = shards
    batches = epoch(shard_paths(root, "train"))
    for images, tokens, ids in batches:
        assert images.dtype == np.float32 and tokens.dtype == np.int32
        assert images.ndim == 4 and images.shape[3] == 1 and images.shape[0] == len(ids)
        assert images.shape[1] % PAD_MULTIPLE == 0 and images.shape[2] % PAD_MULTIPLE == 0
        assert images.min() >= 0.0 and images.max() <= 1.0
        assert len({rows[i]["bucket"] for i in ids}) == 1, "a batch mixes size buckets"
        assert tokens.shape[1] == max(len(rows[i]["tokens"]) for i in ids) + 2
        for image, row_tokens, row_id in zip(images, tokens, ids, strict=True):
            check_row(image, row_tokens, rows[row_id])


def check_row(image: np.ndarray, tokens: np.ndarray, row: dict) -> None:
    h, w = row["height"], row["width"]
    gray = np.asarray(Image.open(io.BytesIO(row["png"])))
    assert image[0, 0, 0] == 1.0, "black must be ink = 1"
    np.testing.assert_allclose(image[:h, :w, 0], 1 - gray / 255.0, atol=1e-6)
    np.testing.assert_array_equal(image[:h, :w], dataset.preprocess_png(row["png"]))
    assert not image[h:].any() and not image[:, w:].any(), "padding must be background (0)"
    n = len(row["tokens"])
    assert tokens[: n + 2].tolist() == [1, *row["tokens"], 2]
    assert not tokens[n + 2 :].any()


def test_numpy_preprocess_equals_tf_on_every_gray_level(shards):
    root, rows = shards
    (images, _, ids), *_ = [b for b in epoch(shard_paths(root, "train")) if "r00" in b[2]]
    mine = dataset.preprocess_png(rows["r00"]["png"])
    assert mine.shape == (16, 16, 1) and mine.dtype == np.float32
    np.testing.assert_array_equal(images[ids.index("r00"), :16, :16], mine)  # bit-identical
    assert mine[0, 0, 0] == 1.0 and mine[15, 15, 0] == 0.0


@pytest.mark.parametrize("shuffle", [False, True])
def test_every_row_exactly_once_per_epoch(shards, shuffle):
    root, rows = shards
    ids = [
        i
        for _, _, batch_ids in epoch(shard_paths(root, "train"), shuffle=shuffle)
        for i in batch_ids
    ]
    assert Counter(ids) == Counter(list(rows))


def test_length_bins_keep_each_batch_within_one_bin_and_every_row_once(shards):
    root, rows = shards
    edges = (3, 5)
    batches = epoch(shard_paths(root, "train"), length_bins=edges, shuffle=True)
    assert Counter(i for _, _, ids in batches for i in ids) == Counter(list(rows))
    for _, _, ids in batches:
        bins = {sum(len(rows[i]["tokens"]) > edge for edge in edges) for i in ids}
        buckets = {rows[i]["bucket"] for i in ids}
        assert len(bins) == 1 and len(buckets) == 1, ids


def test_shuffle_is_deterministic_given_a_seed(shards):
    paths = shard_paths(shards[0], "train")

    def order(seed):
        return [i for _, _, ids in epoch(paths, shuffle=True, seed=seed) for i in ids]

    assert order(3) == order(3)
    assert order(3) != order(4)
    assert order(3) != [i for _, _, ids in epoch(paths) for i in ids]


def test_fixed_height_pads_exactly_and_counts_exclusions(shards):
    root, rows = shards
    paths = shard_paths(root, "train")
    ds = dataset.make_dataset(paths, batch_size=4, pad_multiple=PAD_MULTIPLE, fixed_height=32)
    assert ds.element_spec[0].shape.as_list() == [None, 32, None, 1]  # static for STRIPS
    batches = epoch(paths, fixed_height=32)
    assert all(images.shape[1] == 32 for images, _, _ in batches)
    kept = {i for _, _, ids in batches for i in ids}
    assert kept == {i for i, r in rows.items() if r["height"] <= 32}
    excluded = dataset.excluded_by_size(paths, 32)
    assert excluded == len(rows) - len(kept) > 0
    assert dataset.excluded_by_size(paths, None) == 0


def test_bad_fixed_height_is_refused(shards):
    paths = shard_paths(shards[0], "train")
    with pytest.raises(ValueError, match="multiple"):
        dataset.make_dataset(paths, batch_size=4, pad_multiple=8, fixed_height=36)
    with pytest.raises(ValueError, match="taller"):
        dataset.make_dataset(paths, batch_size=4, pad_multiple=4, fixed_height=4)


def test_drop_remainder_repeat_and_plain_pairs(shards):
    paths = shard_paths(shards[0], "train")
    full = epoch(paths, batch_size=3, drop_remainder=True)
    assert full and all(len(ids) == 3 for _, _, ids in full)
    ds = dataset.make_dataset(paths, batch_size=3, pad_multiple=4, shuffle=True, repeat=True)
    assert len(ds.element_spec) == 2  # (images, tokens) without ids
    assert sum(int(images.shape[0]) for images, _ in ds.take(20)) > len(shards[1])


@pytest.mark.parametrize(
    ("pipelines", "pipeline_id", "replicas", "expected"),
    [
        (1, 0, 2, [[0, 1], [2, 3], [4, 5], [6, 7]]),  # one worker, two devices, in turn
        (2, 0, 2, [[0, 1], [4, 5]]),  # worker 0 of two, one device each
        (2, 1, 2, [[2, 3], [6, 7]]),
        (2, 1, 4, [[2], [3], [6], [7]]),  # two devices each: worker 1 holds replicas 2 and 3
    ],
)
def test_replica_batches_split_each_global_batch(pipelines, pipeline_id, replicas, expected):
    rows = np.arange(8)
    images = tf.data.Dataset.from_tensor_slices((rows.reshape(8, 1, 1, 1), rows.reshape(8, 1)))
    context = tf.distribute.InputContext(pipelines, pipeline_id, replicas)
    shares = dataset.replica_batches(images.batch(4), context)
    got = [(img.numpy().ravel().tolist(), tok.numpy().ravel().tolist()) for img, tok in shares]
    assert [img for img, _ in got] == expected
    assert [tok for _, tok in got] == expected  # images and tokens stay paired
