from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from pipeline import config
from pipeline.contracts import CROPPED_SCHEMA
from pipeline.corpus import crop, render


def png_with_box(size=(100, 60), box=(20, 10, 70, 30), value=0) -> bytes:
    """A white page with a dark rectangle at box = (left, top, right, bottom), exclusive."""
    array = np.full((size[1], size[0]), 255, np.uint8)
    left, top, right, bottom = box
    array[top:bottom, left:right] = value
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_crop_pads_then_downsamples_the_ink_box():
    image = crop.crop_image(png_with_box(), crop.CropSettings(pad=8, downsample=2))
    assert image.size == ((50 + 16) // 2, (20 + 16) // 2)
    pixels = np.asarray(image)
    assert pixels[0].min() == 255 and pixels[:, 0].min() == 255  # white margin kept
    assert pixels[image.height // 2, image.width // 2] < 50  # ink in the middle


def test_blank_page_crops_to_nothing():
    assert crop.crop_image(png_with_box(value=255), crop.CropSettings()) is None


def test_bucket_is_the_smallest_that_fits_and_minus_one_for_none():
    buckets = crop.ordered_buckets([(64, 256), (32, 128), (32, 256)])
    assert buckets == [(32, 128), (32, 256), (64, 256)]
    assert crop.bucket_of(30, 100, buckets) == 0
    assert crop.bucket_of(30, 200, buckets) == 1
    assert crop.bucket_of(40, 100, buckets) == 2
    assert crop.bucket_of(65, 10, buckets) == -1


def test_table_passes_failures_through_and_records_corrupt_images(sample_formulas):
    rendered = render.to_table(
        render.render_formulas(
            [(f"{i:016x}", f) for i, f in enumerate(sample_formulas[:2])],
            render.RenderSettings(dpi=100),
        )
        + [
            render.Rendered("bad0", None, "failed", "tex_error", "Undefined control sequence."),
            render.Rendered("bad1", b"\x89PNG not really", "ok"),
        ]
    )
    table = crop.crop_table(rendered, crop.CropSettings(buckets=((16, 64), (64, 512))))
    rows = {r["id"]: r for r in table.to_pylist()}
    assert table.num_rows == 4
    assert rows["bad0"]["reason"] == "tex_error" and rows["bad0"]["png"] is None
    assert rows["bad1"]["reason"] == "corrupt_image"
    good = rows["0000000000000000"]
    decoded = Image.open(io.BytesIO(good["png"]))
    assert decoded.mode == "L" and decoded.size == (good["width"], good["height"])
    assert good["bucket"] in (0, 1)
    assert table.schema == CROPPED_SCHEMA


def test_bad_settings_are_refused():
    with pytest.raises(SystemExit, match="bucket"):
        config.section("crop", {"buckets": []})
    with pytest.raises(SystemExit, match="positive"):
        config.section("crop", {"buckets": [[0, 10]]})


def test_schema_types_for_shards():
    assert CROPPED_SCHEMA.field("height").type == pa.int32()
