"""Attention strips: layout, where the overlay lands, and shape checks. No TensorFlow needed."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipeline.contracts import Attended
from pipeline.evaluation import heatmaps
from pipeline.evaluation.heatmaps import GAP, attention_strip, safe_filename, save_heatmaps

H, W = 16, 32
ROWS, COLS = 2, 4  # cells of 8 x 8 pixels


def one_hot(index: int, size: int = ROWS * COLS) -> np.ndarray:
    row = np.zeros(size, dtype=np.float32)
    row[index] = 1.0
    return row


def blank() -> np.ndarray:
    return np.zeros((H, W), dtype=np.float32)


def panel_pixels(strip: Image.Image, k: int, per_row: int, height: int = H, width: int = W):
    """Panel k of a strip as an int array [height, width, 3]."""
    label_h = single_label_height()
    x = GAP + (k % per_row) * (width + GAP)
    y = GAP + (k // per_row) * (height + label_h + GAP)
    return np.asarray(strip, dtype=int)[y : y + height, x : x + width]


def single_label_height() -> int:
    strip = attention_strip(blank(), one_hot(0)[None], (ROWS, COLS), ["x"])
    return strip.height - 2 * GAP - H


def test_strip_size_wraps_after_panels_per_row():
    label_h = single_label_height()
    assert label_h > 5  # room for the token text
    attention = np.stack([one_hot(i) for i in range(5)])
    tokens = ["a", "b", "c", "d", "</s>"]
    one_row = attention_strip(blank(), attention, (ROWS, COLS), tokens)
    wrapped = attention_strip(blank(), attention, (ROWS, COLS), tokens, panels_per_row=2)
    assert one_row.mode == wrapped.mode == "RGB"
    assert one_row.size == (5 * W + 6 * GAP, H + label_h + 2 * GAP)
    assert wrapped.size == (2 * W + 3 * GAP, 3 * (H + label_h) + 4 * GAP)


def test_wide_images_are_scaled_down_to_a_small_panel():
    wide = np.zeros((32, 1024, 1), dtype=np.float32)
    strip = attention_strip(wide, one_hot(0, 16)[None], (1, 16), ["x"])
    label_h = single_label_height()
    panel_h = 32 * heatmaps.MAX_PANEL_WIDTH // 1024
    assert strip.size == (heatmaps.MAX_PANEL_WIDTH + 2 * GAP, panel_h + label_h + 2 * GAP)


@pytest.mark.parametrize("cell", range(ROWS * COLS))
def test_one_hot_attention_tints_exactly_its_cell(cell):
    strip = attention_strip(blank(), one_hot(cell)[None], (ROWS, COLS), ["x"])
    pixels = panel_pixels(strip, 0, 8)
    tint = 255 - pixels[..., 1]  # green drops wherever the red overlay is laid
    r, c = divmod(cell, COLS)
    inside = np.zeros((H, W), dtype=bool)
    inside[r * 8 : (r + 1) * 8, c * 8 : (c + 1) * 8] = True
    brightest = np.unravel_index(np.argmax(tint), tint.shape)
    assert inside[brightest]
    assert tint[inside].min() > 150
    assert tint[~inside].max() == 0  # paper elsewhere stays white
    assert (pixels[~inside] == 255).all()


def test_each_token_gets_its_own_panel_in_order():
    attention = np.stack([one_hot(i) for i in (0, 5, 7)])
    strip = attention_strip(blank(), attention, (ROWS, COLS), ["a", "b", "c"], panels_per_row=2)
    for k, cell in enumerate((0, 5, 7)):
        tint = 255 - panel_pixels(strip, k, 2)[..., 1]
        r, c = divmod(cell, COLS)
        assert tint[r * 8 + 4, c * 8 + 4] > 150
        assert tint.sum() == tint[r * 8 : (r + 1) * 8, c * 8 : (c + 1) * 8].sum()


def test_strips_variant_tints_a_whole_column_strip():
    attention = one_hot(2, 4)[None]
    strip = attention_strip(blank()[..., None], attention, (1, 4), ["x"])
    tint = 255 - panel_pixels(strip, 0, 8)[..., 1]
    assert (tint[:, 16:24] > 150).all()
    assert (tint[:, :16] == 0).all() and (tint[:, 24:] == 0).all()


def test_each_panel_is_normalised_on_its_own():
    attention = np.stack([one_hot(3), 0.2 * one_hot(3)])
    strip = attention_strip(blank(), attention, (ROWS, COLS), ["a", "b"])
    first, second = panel_pixels(strip, 0, 8), panel_pixels(strip, 1, 8)
    assert (255 - first[..., 1]).max() > 150
    assert np.array_equal(first, second)


def test_ink_stays_dark_under_the_overlay():
    image = blank()
    image[:, 2] = 1.0  # a vertical stroke inside cell 0
    image[:, 20] = 1.0  # and one outside it
    strip = attention_strip(image, one_hot(0)[None], (ROWS, COLS), ["x"])
    pixels = panel_pixels(strip, 0, 8)
    assert pixels[:, 2].max() == 0
    assert pixels[:, 20].max() == 0
    assert (pixels[:, 3] < 255).any() and (pixels[:, 21] == 255).all()


def test_token_text_is_written_under_its_panel():
    strip = attention_strip(blank(), np.stack([one_hot(0), one_hot(1)]), (ROWS, COLS), ["X", ""])
    label_h = single_label_height()
    pixels = np.asarray(strip, dtype=int)
    under_first = pixels[GAP + H : GAP + H + label_h, GAP : GAP + W]
    under_second = pixels[GAP + H : GAP + H + label_h, 2 * GAP + W : 2 * GAP + 2 * W]
    assert under_first.min() < 100
    assert under_second.min() == 255


@pytest.mark.parametrize(
    ("image", "attention", "grid", "tokens", "message"),
    [
        (blank(), np.zeros((1, 7)), (ROWS, COLS), ["a"], "rows\\*cols"),
        (blank(), np.zeros((2, 8)), (ROWS, COLS), ["a"], "tokens"),
        (blank(), np.zeros(8), (ROWS, COLS), ["a"], r"\[T, rows\*cols\]"),
        (np.zeros((H, W, 3)), np.zeros((1, 8)), (ROWS, COLS), ["a"], "image"),
        (np.zeros((0, W)), np.zeros((1, 8)), (ROWS, COLS), ["a"], "image"),
        (blank(), np.zeros((1, 4 * 64)), (4, 64), ["a"], "finer"),
        (blank(), np.zeros((1, 0)), (0, COLS), ["a"], "grid"),
        (blank(), np.zeros((0, 8)), (ROWS, COLS), [], "no tokens"),
        (blank(), np.full((1, 8), np.nan), (ROWS, COLS), ["a"], "NaN"),
    ],
)
def test_bad_shapes_raise_clear_errors(image, attention, grid, tokens, message):
    with pytest.raises(ValueError, match=message):
        attention_strip(image, attention, grid, tokens)


def test_panels_per_row_must_be_positive():
    with pytest.raises(ValueError, match="panels_per_row"):
        attention_strip(blank(), one_hot(0)[None], (ROWS, COLS), ["a"], panels_per_row=0)


def test_safe_filenames_are_safe_and_distinct():
    ids = ["a/b", "a_b", "../etc/passwd", "..", "", "x y<z>", "train-00001.png"]
    names = [safe_filename(i) for i in ids]
    assert len(set(names)) == len(ids)
    for name in names:
        assert name and not name.startswith(".")
        assert all(ch.isalnum() or ch in "._-" for ch in name)
    assert safe_filename("a_b") == "a_b"  # already-safe ids keep their name
    assert safe_filename("x" * 500) != safe_filename("x" * 501)
    assert len(safe_filename("x" * 500)) < 120


def test_save_heatmaps_writes_one_png_per_formula(tmp_path):
    samples = [
        Attended("a/b", blank(), np.stack([one_hot(0), one_hot(1)]), (2, 4), ["a", "</s>"]),
        Attended("a_b", blank()[..., None], one_hot(3, 4)[None], (1, 4), ["</s>"]),
    ]
    paths = save_heatmaps(samples, tmp_path / "out")
    assert [p.parent for p in paths] == [tmp_path / "out"] * 2
    assert paths[1].name == "a_b.png" and paths[0].name != paths[1].name
    for path, sample in zip(paths, samples, strict=True):
        with Image.open(path) as saved:
            expected = attention_strip(sample.image, sample.attention, sample.grid, sample.tokens)
            assert saved.format == "PNG"
            assert np.array_equal(np.asarray(saved.convert("RGB")), np.asarray(expected))
    again = save_heatmaps(samples, tmp_path / "again")
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in paths]


def test_save_heatmaps_refuses_to_overwrite_a_duplicate_id(tmp_path):
    sample = Attended("same", blank(), one_hot(0)[None], (ROWS, COLS), ["a"])
    with pytest.raises(ValueError, match="same file"):
        save_heatmaps([sample, sample], tmp_path)
