"""Crop stage: rendered pages -> ink-tight, padded, downsampled grayscale PNGs in size buckets.

This follows Deng et al.'s im2markup preprocessing (crop to the ink, pad, downsample by 2) so that
published numbers stay comparable. Buckets group similar sizes so that training batches need
little padding; an image larger than every bucket is kept with bucket -1 and dropped later by the
shards stage, which counts it under its own reason.
"""

from __future__ import annotations

import argparse
import io
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from pipeline import cli, provenance
from pipeline.config import CropSettings
from pipeline.contracts import CROPPED_SCHEMA, sha256_file
from pipeline.corpus import chunk_cache, variety

# the params this stage reads (dvc.yaml lists the same): render.dpi for crop.scale_dpi's factors
READS = ("crop", "render.dpi")
INK_THRESHOLD = 250  # gray levels below this count as ink; dvipng's anti-aliasing fades to 255


@dataclass(frozen=True)
class Cropped:
    """One render result after cropping: the image, or the reason (and detail) there is none."""

    image: Image.Image | None
    reason: str | None = None
    error: str | None = None


def ordered_buckets(buckets: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Smallest area first, so an image lands in the tightest bucket that holds it."""
    return sorted(buckets, key=lambda hw: (hw[0] * hw[1], hw))


def bucket_of(height: int, width: int, buckets: Sequence[tuple[int, int]]) -> int:
    """Index into ``ordered_buckets`` of the first bucket the image fits, or -1 if none."""
    for index, (bh, bw) in enumerate(buckets):
        if height <= bh and width <= bw:
            return index
    return -1


def crop_image(png: bytes, settings: CropSettings) -> Image.Image | None:
    """Crop to ink, pad with white, downsample; None when the image has no ink."""
    return crop_gray(np.asarray(Image.open(io.BytesIO(png)).convert("L")), settings)


def crop_gray(gray: np.ndarray, settings: CropSettings) -> Image.Image | None:
    """``crop_image`` on an already decoded uint8 grayscale array (predict has one in hand)."""
    ink = gray < INK_THRESHOLD
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        return None
    tight = gray[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    padded = np.pad(tight, settings.pad, constant_values=255)
    image = Image.fromarray(padded, mode="L")
    if settings.downsample > 1:
        image = image.reduce(settings.downsample)
    return image


def resample(page: Image.Image, factor: float, back: bool) -> Image.Image:
    """The page as if rendered at ``factor`` times its dpi: area-averaged when smaller (as a
    lower dpi's anti-aliasing averages), interpolated when larger. With ``back`` it returns to
    its own size, keeping the drawn dpi's detail at the render dpi's scale: a 100-dpi screenshot
    blown up to 200 dpi, as predict's rescaling of one gives the model."""
    width, height = page.size
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    smaller = factor < 1
    drawn = page.resize(size, Image.Resampling.BOX if smaller else Image.Resampling.BICUBIC)
    if not back:
        return drawn
    return drawn.resize(
        (width, height), Image.Resampling.BILINEAR if smaller else Image.Resampling.BOX
    )


def crop_rendered(rendered: Mapping, settings: CropSettings, factor: float = 1.0) -> Cropped:
    """Crop a render result (its ``status``, ``reason``, ``error`` and ``png``), resampled by
    ``factor`` first (``crop.scale_dpi``); a failed render keeps its reason, and a picture that
    cannot be cropped gets its own."""
    if rendered["status"] != "ok" or rendered["png"] is None:
        return Cropped(None, rendered["reason"], rendered["error"])
    try:
        page = Image.open(io.BytesIO(rendered["png"])).convert("L")
        if factor != 1.0:
            page = resample(page, factor, back=settings.scale_to == "render")
        image = crop_gray(np.asarray(page), settings)
    except (OSError, ValueError) as exc:  # PIL raises these for corrupt data
        return Cropped(None, "corrupt_image", str(exc))
    if image is None:
        return Cropped(None, "blank", "no ink after rendering")
    return Cropped(image)


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def crop_table(
    rendered: pa.Table, settings: CropSettings, scales: Mapping[str, float] | None = None
) -> pa.Table:
    """Crop every rendered row, resampling those ``scales`` names by their factor (see
    ``variety.scales``); failed rows pass through so the shards stage can count them."""
    buckets = ordered_buckets(settings.buckets)
    scales = scales or {}
    rows = []
    for row in rendered.to_pylist():
        rows.append(_crop_row(row, settings, buckets, scales.get(row["id"], 1.0)))
    return pa.Table.from_pylist(rows, schema=CROPPED_SCHEMA)


def _crop_row(
    row: dict, settings: CropSettings, buckets: list[tuple[int, int]], factor: float
) -> dict:
    out = {"id": row["id"], "png": None, "height": None, "width": None, "bucket": None}
    cropped = crop_rendered(row, settings, factor)
    image = cropped.image
    if image is None:
        return out | {"status": "failed", "reason": cropped.reason, "error": cropped.error}
    height, width = image.height, image.width
    return out | {
        "png": encode_png(image),
        "height": height,
        "width": width,
        "bucket": bucket_of(height, width, buckets),
        "status": "ok",
        "reason": None,
        "error": None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline crop", description=__doc__)
    cli.add_params_args(parser)
    parser.add_argument("--rendered", type=Path, required=True, help="a render chunk's Parquet")
    parser.add_argument(
        "--formulas", type=Path, help="step0 table: each formula's split (for crop.scale_dpi)"
    )
    parser.add_argument("--out", type=Path, required=True, help="Parquet file for this chunk")
    parser.add_argument("--cache", type=Path, help="keep finished chunks here, for a rerun")
    args = parser.parse_args(argv)
    params = cli.read_params(args, READS)
    settings = params.crop
    rendered = pq.read_table(args.rendered)
    scales = _chunk_scales(rendered, args.formulas, settings, params.render.dpi)
    key = provenance.digest(asdict(settings), sha256_file(args.rendered), scales)
    table, _ = chunk_cache.produce(
        args.out,
        lambda: crop_table(rendered, settings, scales),
        args.cache,
        "crop",
        key,
    )
    statuses = Counter(r or "ok" for r in table.column("reason").to_pylist())
    oversize = sum(b == -1 for b in table.column("bucket").to_pylist())
    cli.setup_logging().info(
        "crop %s: %d in, %s, %d larger than every bucket, %d resampled (crop.scale_dpi)",
        args.rendered.name,
        table.num_rows,
        dict(statuses),
        oversize,
        len(scales),
    )
    return 0


def _chunk_scales(
    rendered: pa.Table, formulas: Path | None, settings: CropSettings, render_dpi: int
) -> dict[str, float]:
    """The resampling factor of each training formula in the chunk (none when off)."""
    if settings.scale_dpi is None:
        return {}
    if formulas is None:
        raise SystemExit("crop: crop.scale_dpi resamples training images only: --formulas needed")
    split = pq.read_table(formulas, columns=["id", "split"])
    training = variety.train_ids(split.column("id").to_pylist(), split.column("split").to_pylist())
    return variety.scales(rendered.column("id").to_pylist(), training, settings, render_dpi)
