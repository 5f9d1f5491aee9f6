"""tf.data input pipeline: Parquet shards -> padded (images, tokens) batches for the models.

Contract with the models: ``images`` float32 [B, H, W, 1] with 1 = ink and 0 = background, so
that zero padding is background; H and W are multiples of ``pad_multiple`` (the model's total
pooling, so no feature map is cut), or H is exactly ``fixed_height`` when given. ``tokens`` int32
[B, T] = ``<s> t1..tn </s>`` then 0 (``<pad>``) up to the batch's longest. Images sit at the
top-left, padded bottom and right, except on a model's fixed ``canvas`` (Singh 2018's published
input), where each is centred and framed, and H and W are the framed canvas's.

Streaming, not in-memory: rows come from pyarrow's record-batch iterator through
``from_generator``, one shard file at a time, so memory holds a few files' worth of compressed
PNGs (~1.6 kB per image, so ~8 MB per 5000-row shard) plus the shuffle buffer, flat however large
the corpus grows. Loading the columns once would hold every PNG (~160 MB at 100k rows, growing
with the corpus) for no clear speed gain: the generator hands over whole record batches, so the
Python cost is per 1024 rows, and PNG decoding, the real work, runs in parallel in tf. Measured on
2 shared cores with 5000-row shards, both deliver 5-8k images/s (within the noise); only tiny
shards favour loading, as each file start costs ~20 ms.

Batches come from one size bucket at a time (``group_by_window`` keyed on the shard's ``bucket``
column), so an image is padded only to the largest image of its own bucket's batch, never to the
largest in the corpus.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import tensorflow as tf
from PIL import Image

from pipeline.config import AugmentSettings
from pipeline.contracts import END_ID, START_ID
from pipeline.model import augment as augmentation

READ_BATCH_ROWS = 1024  # rows per Python -> tf hand-over: one Python call per this many rows
COLUMNS = ["id", "png", "height", "width", "bucket", "tokens"]

#: A fixed input geometry: (height, width, frame), every image centred on a canvas of height x
#: width, inside a frame of that many background pixels (Singh 2018's published input).
Canvas = tuple[int, int, int]

_ROW_SPEC = (
    tf.TensorSpec([None], tf.string),  # id
    tf.TensorSpec([None], tf.string),  # png
    tf.TensorSpec([None], tf.int32),  # height
    tf.TensorSpec([None], tf.int32),  # width
    tf.TensorSpec([None], tf.int32),  # bucket
    tf.RaggedTensorSpec([None, None], tf.int32, ragged_rank=1),  # tokens
)


def count_rows(paths: Sequence[Path]) -> int:
    """Rows in the shards, from the Parquet footers alone (no data is read)."""
    return sum(pq.ParquetFile(p).metadata.num_rows for p in paths)


def excluded_by_size(
    paths: Sequence[Path], fixed_height: int | None, canvas: Canvas | None = None
) -> int:
    """Rows that ``make_dataset`` leaves out (taller than ``fixed_height``, or not fitting the
    ``canvas``), so callers can report them."""
    if canvas is not None:
        height, width, _ = canvas
        too_big = lambda t: pc.or_(_over(t, "height", height), _over(t, "width", width))  # noqa: E731
        return sum(_count(p, too_big) for p in paths)
    if fixed_height is None:
        return 0
    return sum(_count(p, lambda t: _over(t, "height", fixed_height)) for p in paths)


def _over(table: pa.Table, column: str, limit: int) -> pa.ChunkedArray:
    return pc.greater(table.column(column), limit)


def _count(path: Path, test) -> int:
    table = pq.read_table(path, columns=["height", "width"])
    return int(pc.sum(test(table)).as_py() or 0)


def preprocess_png(png_bytes: bytes) -> np.ndarray:
    """Decode one PNG to float32 [H, W, 1], 1 = ink, bit-identical to the tf.data path.

    For prediction outside tf.data. Both paths compute ``(255 - pixel) / 255`` in float32 (an
    exact integer divided once, so correctly rounded and equal everywhere), which is the
    contract's ``1 - pixel / 255`` up to rounding.
    """
    return ink_from_gray(np.asarray(Image.open(io.BytesIO(png_bytes)).convert("L")))


def ink_from_gray(gray: np.ndarray) -> np.ndarray:
    """``preprocess_png`` on an already decoded uint8 grayscale array."""
    ink = (255 - gray.astype(np.uint8)).astype(np.float32) / np.float32(255)
    return ink[:, :, None]


def make_dataset(
    paths: Sequence[Path],
    *,
    batch_size: int,
    pad_multiple: int,
    fixed_height: int | None = None,
    canvas: Canvas | None = None,
    shuffle: bool = False,
    seed: int = 0,
    repeat: bool = False,
    drop_remainder: bool = False,
    with_ids: bool = False,
    shuffle_buffer: int = 4096,
    length_bins: Sequence[int] = (),
    augment: AugmentSettings | None = None,
) -> tf.data.Dataset:
    """Batches of ``(images, tokens)`` (plus ``ids`` [B] strings when ``with_ids``).

    Without ``repeat`` and ``drop_remainder``, one pass yields every row exactly once, except
    rows taller than ``fixed_height`` or not fitting the ``canvas`` (see ``excluded_by_size``).
    With a canvas every image is centred on it, framed, and ``pad_multiple`` plays no part.
    ``shuffle`` permutes the file order each epoch and mixes rows through a
    ``shuffle_buffer``-row buffer of still-compressed PNGs; both are seeded, so a given seed
    gives the same batches every run. With ``length_bins`` (upper edges of token counts) a batch
    also holds formulas of one length bin only. ``augment`` (training only) changes each image
    as ``pipeline.model.augment`` draws it from ``seed`` and the row's id; with every
    probability 0 the images are the shards' own. Which rows are left out by size is decided
    before it, from the shards' sizes, and augmented images stay within the canvas or height.
    """
    _check_args(paths, batch_size, pad_multiple, None if canvas else fixed_height, canvas)
    rows = _rows(paths, shuffle=shuffle, seed=seed, repeat=repeat)
    if shuffle:
        rows = rows.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if canvas is not None:
        height, width, frame = canvas
        rows = rows.filter(
            lambda row: tf.logical_and(row["height"] <= height, row["width"] <= width)
        )
        fixed_height, pad_multiple = height + 2 * frame, 1
    elif fixed_height is not None:
        rows = rows.filter(lambda row: row["height"] <= fixed_height)
    rows = rows.map(_decode, num_parallel_calls=tf.data.AUTOTUNE)
    if augment is not None and augment.active:
        limits = (canvas[0], canvas[1]) if canvas is not None else (fixed_height, None)
        rows = rows.map(
            augmentation.augmenter(augment, seed, *limits), num_parallel_calls=tf.data.AUTOTUNE
        )
    if canvas is not None:
        rows = rows.map(_centred(canvas), num_parallel_calls=tf.data.AUTOTUNE)
    batches = rows.group_by_window(
        key_func=_window_key(length_bins),
        reduce_func=_batcher(batch_size, fixed_height, drop_remainder),
        window_size=batch_size,
    )
    finish = _finisher(pad_multiple, fixed_height, with_ids)
    return batches.map(finish, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _check_args(
    paths: Sequence[Path],
    batch_size: int,
    pad_multiple: int,
    fixed_height: int | None,
    canvas: Canvas | None,
) -> None:
    if not paths:
        raise ValueError("make_dataset: no shard files given")
    if batch_size < 1 or pad_multiple < 1:
        raise ValueError(
            f"batch_size and pad_multiple must be positive: {batch_size}, {pad_multiple}"
        )
    if fixed_height is not None and (fixed_height < 1 or fixed_height % pad_multiple):
        raise ValueError(
            f"fixed_height {fixed_height} must be a positive multiple of {pad_multiple}"
        )
    if (fixed_height or canvas) and excluded_by_size(paths, fixed_height, canvas) == count_rows(
        paths
    ):  # with repeat=True an empty stream would hang the caller forever
        if canvas:
            raise ValueError(f"no row fits the canvas {canvas[0]}x{canvas[1]}")
        raise ValueError(f"every row is taller than fixed_height {fixed_height}")


def _rows(paths: Sequence[Path], *, shuffle: bool, seed: int, repeat: bool) -> tf.data.Dataset:
    """One element per shard row; files are read in turn (or interleaved when shuffling)."""
    files = tf.data.Dataset.from_tensor_slices([str(p) for p in paths])
    if shuffle:
        files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        files = files.repeat()
    read = lambda path: tf.data.Dataset.from_generator(  # noqa: E731
        _read_shard, output_signature=_ROW_SPEC, args=(path,)
    ).unbatch()
    if shuffle:
        # several files at once so the row buffer mixes files, not just one file's neighbours
        rows = files.interleave(read, cycle_length=min(len(paths), 4), block_length=16)
    else:
        rows = files.flat_map(read)
    keys = ("id", "png", "height", "width", "bucket", "tokens")
    return rows.map(lambda *columns: dict(zip(keys, columns, strict=True)))


def _read_shard(path: bytes) -> Iterator[tuple]:
    """Record batches of one shard as column arrays: the Python cost is per batch, not per row."""
    for batch in pq.ParquetFile(path.decode()).iter_batches(READ_BATCH_ROWS, columns=COLUMNS):
        tokens = batch.column("tokens")
        yield (
            batch.column("id").to_numpy(zero_copy_only=False).astype(object),
            batch.column("png").to_numpy(zero_copy_only=False).astype(object),
            batch.column("height").to_numpy().astype(np.int32),
            batch.column("width").to_numpy().astype(np.int32),
            batch.column("bucket").to_numpy().astype(np.int32),
            tf.RaggedTensor.from_row_lengths(
                tokens.flatten().to_numpy().astype(np.int32),
                tokens.value_lengths().to_numpy().astype(np.int64),
            ),
        )


def _decode(row: dict) -> dict:
    """PNG -> uint8 ink (255 - gray) so batch padding with 0 is background; frame the tokens."""
    gray = tf.io.decode_png(row["png"], channels=1, dtype=tf.uint8)
    tokens = tf.concat([[START_ID], row["tokens"], [END_ID]], axis=0)
    return {"ink": 255 - gray, "tokens": tokens, "id": row["id"], "bucket": row["bucket"]}


def _window_key(length_bins: Sequence[int]):
    """Batches group rows by size bucket and, given edges, by token-length bin too."""
    edges = tf.constant(list(length_bins), tf.int32)
    bins = len(length_bins) + 1

    def key(row: dict) -> tf.Tensor:
        length = tf.size(row["tokens"], out_type=tf.int32) - 2  # without <s> and </s>
        which = tf.reduce_sum(tf.cast(length > edges, tf.int64))
        return tf.cast(row["bucket"], tf.int64) * bins + which

    return key


def _centred(canvas: Canvas):
    """Centre the ink on the canvas (the odd pixel below and right), then frame it."""
    height, width, frame = canvas

    def centre(row: dict) -> dict:
        ink = row["ink"]
        spare_h, spare_w = height - tf.shape(ink)[0], width - tf.shape(ink)[1]
        top, left = spare_h // 2, spare_w // 2
        padding = [[frame + top, frame + spare_h - top], [frame + left, frame + spare_w - left]]
        return row | {"ink": tf.pad(ink, padding + [[0, 0]])}

    return centre


def _batcher(batch_size: int, fixed_height: int | None, drop_remainder: bool):
    """Padded batching inside one bucket's window; a fixed height is padded here already."""
    shapes = {"ink": [fixed_height, None, 1], "tokens": [None], "id": [], "bucket": []}

    def reduce(_key: tf.Tensor, window: tf.data.Dataset) -> tf.data.Dataset:
        return window.padded_batch(batch_size, padded_shapes=shapes, drop_remainder=drop_remainder)

    return reduce


def _finisher(pad_multiple: int, fixed_height: int | None, with_ids: bool):
    """Round H and W up to ``pad_multiple`` and scale to [0, 1] once per batch, not per image."""

    def finish(batch: dict) -> tuple:
        ink = batch["ink"]
        height, width = tf.shape(ink)[1], tf.shape(ink)[2]
        extra_h = (-height) % pad_multiple
        extra_w = (-width) % pad_multiple
        ink = tf.pad(ink, [[0, 0], [0, extra_h], [0, extra_w], [0, 0]])
        images = tf.cast(ink, tf.float32) / 255.0
        images = tf.ensure_shape(images, [None, fixed_height, None, 1])
        if with_ids:
            return images, batch["tokens"], batch["id"]
        return images, batch["tokens"]

    return finish


def replica_batches(
    batches: tf.data.Dataset, context: tf.distribute.InputContext
) -> tf.data.Dataset:
    """This input pipeline's share of each global batch: one per-replica batch for each of its
    replicas, in turn.

    Every worker reads the same global batches (same files, same seed) and keeps its slice, so
    all workers take the same number of steps, which their collectives need, and a step trains
    on exactly the rows one device would. The price is that each worker decodes every image; the
    step, not decoding, is what costs on the accelerators this is for. Each batch's first
    dimension must be a multiple of the replicas (``drop_remainder``).
    """
    replicas = context.num_replicas_in_sync
    local = replicas // context.num_input_pipelines
    first = context.input_pipeline_id * local

    def share(*parts: tf.Tensor) -> tf.data.Dataset:
        per_replica = []
        for part in parts:
            shape = tf.concat([[replicas, -1], tf.shape(part)[1:]], axis=0)
            per_replica.append(tf.reshape(part, shape)[first : first + local])
        return tf.data.Dataset.from_tensor_slices(tuple(per_replica))

    return batches.flat_map(share)
