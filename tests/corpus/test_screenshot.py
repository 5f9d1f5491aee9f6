"""Screenshot normalization on real renders: scale, colours, borders, transparency."""

from __future__ import annotations

import io
import statistics

import numpy as np
import pytest
from PIL import Image

from pipeline.config import CropSettings, RenderSettings
from pipeline.corpus import crop, render, screenshot
from pipeline.model.predict import load_gray

FORMULAS = [
    r"x ^ { 2 } + y ^ { 2 } = z ^ { 2 }",
    r"\frac { a } { b } + \sqrt { c }",
    r"\sum _ { i = 1 } ^ { n } i = \frac { n ( n + 1 ) } { 2 }",
    r"\left( \begin{array} { c c } a & b \\ c & d \end{array} \right)",
    r"E = m c ^ { 2 } \quad \mathrm { w i t h } \quad c = 3 \times 1 0 ^ { 8 }",
    r"\int _ { 0 } ^ { \infty } e ^ { - x ^ { 2 } } d x = \frac { \sqrt { \pi } } { 2 }",
    r"\nabla \cdot \mathbf { E } = \frac { \rho } { \varepsilon _ { 0 } }",
    r"f ( x ) = \sum _ { k } a _ { k } \cos ( k x ) + b _ { k } \sin ( k x )",
]
NO_CROP_SCALING = CropSettings(pad=4, downsample=1)


def pages(dpi: int) -> list[np.ndarray]:
    items = [(str(i), f) for i, f in enumerate(FORMULAS)]
    rendered = render.render_formulas(items, RenderSettings(dpi=dpi))
    assert all(r.status == "ok" for r in rendered), [r.error for r in rendered]
    return [np.asarray(Image.open(io.BytesIO(r.png)).convert("L")) for r in rendered]


@pytest.fixture(scope="module")
def at_200() -> list[np.ndarray]:
    return pages(200)


def ink_box(gray: np.ndarray) -> tuple[int, int]:
    cropped = crop.crop_gray(gray, NO_CROP_SCALING)
    assert cropped is not None
    return cropped.height, cropped.width


@pytest.mark.parametrize("dpi", [100, 200, 400])
def test_the_scale_of_renders_at_a_known_dpi_is_estimated(dpi):
    """Within what stroke width can tell: a formula of big operators and bold letters reads
    larger than one of thin italics (over real arXiv formulas the middle 80% of estimates lie
    within 11% of the truth, benchmarks/robustness.py)."""
    estimates = [screenshot.estimate_dpi(screenshot.ink_map(p)[0]) / dpi for p in pages(dpi)]
    assert 0.9 < statistics.median(estimates) < 1.2, estimates
    assert all(0.75 < e < 1.45 for e in estimates), estimates


def test_a_screenshot_at_2x_zoom_comes_back_at_the_training_size(at_200):
    for zoomed, plain in zip(pages(400), at_200, strict=True):
        result = screenshot.normalize(zoomed, train_dpi=200)
        assert result.factor < 0.8 and not result.inverted
        (h, w), (ref_h, ref_w) = ink_box(result.gray), ink_box(plain)
        assert abs(h / ref_h - 1) < 0.3 and abs(w / ref_w - 1) < 0.3, (h, w, ref_h, ref_w)


def test_a_given_dpi_is_used_as_it_is(at_200):
    page = at_200[0]
    result = screenshot.normalize(page, train_dpi=200, dpi=100)
    assert (result.dpi, result.factor) == (100, 2.0)
    assert result.gray.shape == (2 * page.shape[0], 2 * page.shape[1])
    assert screenshot.normalize(page, train_dpi=200, dpi=200).gray is page


def test_the_pipelines_own_renders_reach_the_model_untouched(at_200):
    results = [screenshot.normalize(page, train_dpi=200) for page in at_200]
    untouched = [r.gray is page for r, page in zip(results, at_200, strict=True)]
    assert sum(untouched) >= len(at_200) - 2, [r.dpi for r in results]
    assert untouched == [r.factor == 1.0 for r in results]


def test_a_dark_screenshot_is_turned_round(at_200):
    page = at_200[2]
    dark = (30 + (255 - page.astype(np.float32)) * (200 / 255)).round().astype(np.uint8)
    result = screenshot.normalize(dark, train_dpi=200, dpi=200)
    assert result.inverted
    assert result.gray.shape == page.shape
    assert np.abs(result.gray.astype(int) - page).max() <= 2


def test_coloured_ink_on_tinted_paper_becomes_black_on_white(at_200):
    page = at_200[1]
    ink = 1.0 - page.astype(np.float32) / 255
    paper, blue = np.array([250, 240, 200]), np.array([20, 40, 160])
    rgb = (paper * (1 - ink[..., None]) + blue * ink[..., None]).round().astype(np.uint8)
    gray = np.asarray(load_gray(png_bytes(Image.fromarray(rgb, mode="RGB"))))
    result = screenshot.normalize(gray, train_dpi=200, dpi=200)
    assert not result.inverted
    assert np.abs(result.gray.astype(int) - page).mean() < 2
    assert ink_box(result.gray) == ink_box(page)


def test_light_ink_on_a_transparent_background_is_not_lost(at_200):
    page = at_200[3]
    alpha = 255 - page  # drawn in white, the ink's strength in the alpha channel
    rgba = np.dstack([np.full_like(page, 255)] * 3 + [alpha])
    gray = np.asarray(load_gray(png_bytes(Image.fromarray(rgba, mode="RGBA"))))
    result = screenshot.normalize(gray, train_dpi=200, dpi=200)
    assert result.inverted
    assert np.abs(result.gray.astype(int) - page).max() <= 1


def test_a_border_around_the_screenshot_is_peeled_off(at_200):
    page = at_200[4]
    framed = np.pad(np.pad(page, 6, constant_values=255), 2, constant_values=0)
    result = screenshot.normalize(framed, train_dpi=200, dpi=200)
    assert ink_box(result.gray) == ink_box(page)
    assert np.array_equal(np.asarray(_crop(result.gray)), np.asarray(_crop(page)))


def test_a_blank_image_has_no_scale_and_is_left_as_it_is():
    blank = np.full((30, 80), 255, np.uint8)
    result = screenshot.normalize(blank, train_dpi=200)
    assert result.dpi is None and result.factor == 1.0 and result.gray is blank


def _crop(page: np.ndarray):
    return crop.crop_gray(page, NO_CROP_SCALING)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
