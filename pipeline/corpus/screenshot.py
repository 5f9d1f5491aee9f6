"""A person's image of a formula -> what training saw: dark ink on white at the render scale.

A screenshot differs from our renders in ways the model never saw: its scale (a PDF viewer's
zoom, a phone photo of a slide), its colours (light ink on a dark theme, coloured ink, tinted
paper), a window or table border at its edge, and JPEG's halo. ``normalize`` undoes these
before the crop stage's own cropping, so ``predict`` (and ``serve``, and ``evaluate
--formulas``) give the model the training's kind of image.

Scale is estimated from the strokes: the mean stroke width of a formula's ink (twice its ink
over its edge length, in pixels) grows with the dpi it was drawn at, and hardly with what the
formula says. ``STROKE_WIDTHS`` holds that width for 12pt Computer Modern rendered by
latex + dvipng (training's renderer) at five dpi, measured by ``benchmarks/robustness.py
--calibrate``; a screenshot's width read through the table gives the dpi a 12pt formula would
need to look like it. An image whose estimate is within ``SNAP`` of the training dpi is left at
its size, so the pipeline's own renders reach the model exactly as in training.

Invariants: the output is uint8, ink dark on a white (255) background; an image that already is
dark ink on pure white at the training scale comes back unchanged (the same array).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

# (dpi, mean stroke width in pixels) of 12pt formulas by latex + dvipng: the median over 119
# real test formulas at each dpi. Between and beyond the rows: log-log interpolation.
STROKE_WIDTHS = ((100, 1.135), (150, 1.297), (200, 1.577), (300, 2.168), (600, 4.146))
SNAP = 1.2  # estimates within this factor of the training dpi count as the training dpi
DARK_BACKGROUND = 128  # a background below this is a dark theme: the image is inverted
FRAME_INK = 0.6  # an edge row or column this much ink is a border line, not the formula
MIN_EDGES = 20.0  # less edge than this (in pixels of ink edge) gives no scale estimate
DPI_RANGE = (50.0, 1600.0)  # estimates are kept within this: a block of ink is no formula
GIVEN_DPI = (10.0, 5000.0)  # what a person may say an image's dpi is (predict --dpi, serve ?dpi=)


def dpi_problem(dpi: float) -> str | None:
    """Why a given dpi cannot be used (None: it can); the caller names where it came from."""
    low, high = GIVEN_DPI
    if not math.isfinite(dpi) or not low <= dpi <= high:
        return f"must be between {low:g} and {high:g}, got {dpi:g}"
    return None


@dataclass(frozen=True)
class Normalized:
    """The image for cropping, and what was done to it (reported by predict with --jsonl)."""

    gray: np.ndarray  # uint8 [H, W]: dark ink on white, at the training scale
    dpi: float | None  # the input's scale as a dpi of 12pt formulas; None: no ink to tell by
    factor: float  # the resize applied: training dpi / input dpi (1 within SNAP), times scale
    inverted: bool  # light ink on a dark background, turned round


def normalize(
    gray: np.ndarray, train_dpi: float, dpi: float | None = None, scale: float = 1.0
) -> Normalized:
    """``gray`` (uint8 [H, W], any colours) as dark ink on white at ``train_dpi``.

    ``dpi`` is the input's scale when the caller knows it (``predict --dpi``); otherwise it is
    estimated from the strokes, and an estimate within ``SNAP`` of ``train_dpi`` is trusted
    no further than "about right", so the image keeps its size. ``scale`` multiplies the
    resize, for trying sizes around the estimate (``predict --try-scales``).
    """
    ink, inverted = ink_map(gray)
    ink = strip_frame(ink)
    if dpi is None:
        dpi = estimate_dpi(ink)
        factor = 1.0 if dpi is None else _snapped(train_dpi / dpi)
    else:
        factor = train_dpi / dpi
    factor *= scale
    out = _to_gray(ink)
    if np.array_equal(out, gray):
        out = gray  # training's own kind of image: not even a copy
    if factor != 1.0:
        out = resize(out, factor)
    return Normalized(out, dpi, factor, inverted)


def ink_map(gray: np.ndarray) -> tuple[np.ndarray, bool]:
    """Ink in [0, 1] (1 = the formula's strongest ink, 0 = its background), and whether the
    image was light on dark. The background is the commonest gray level: a formula's ink
    covers a small part of its picture (the outermost pixels would not do: a border is ink)."""
    values = gray.astype(np.float32)
    background = float(np.bincount(gray.ravel(), minlength=256).argmax())
    inverted = background < DARK_BACKGROUND
    if inverted:
        values, background = 255.0 - values, 255.0 - background
    strongest = float(values.min())
    contrast = background - strongest
    if contrast <= 0:
        return np.zeros_like(values), inverted
    return np.clip((background - values) / contrast, 0.0, 1.0), inverted


def strip_frame(ink: np.ndarray) -> np.ndarray:
    """Without the border lines at the image's edges (a window's, a table cell's, a box's):
    edge rows and columns that are mostly ink, peeled off while there are some, up to a tenth
    of the image each way. A formula's own rule (a fraction bar) never reaches both edges, as a
    cut-out formula has margins."""
    top, bottom, left, right = 0, ink.shape[0], 0, ink.shape[1]
    limit_h, limit_w = max(1, ink.shape[0] // 10), max(1, ink.shape[1] // 10)

    def is_line(strip: np.ndarray) -> bool:
        return strip.size > 0 and float((strip > 0.5).mean()) >= FRAME_INK

    peeled = True
    while peeled and bottom - top > 2 and right - left > 2:
        peeled = False
        if top < limit_h and is_line(ink[top, left:right]):
            top, peeled = top + 1, True
        if ink.shape[0] - bottom < limit_h and is_line(ink[bottom - 1, left:right]):
            bottom, peeled = bottom - 1, True
        if left < limit_w and is_line(ink[top:bottom, left]):
            left, peeled = left + 1, True
        if ink.shape[1] - right < limit_w and is_line(ink[top:bottom, right - 1]):
            right, peeled = right - 1, True
    return ink[top:bottom, left:right]


def stroke_width(ink: np.ndarray) -> float | None:
    """Mean stroke width in pixels: a stroke of width w and length L has ink w*L and edges 2*L
    long. Edge length is the gradient's magnitude summed, which anti-aliasing and blur leave
    alone; None when there is too little ink to tell."""
    if ink.shape[0] < 2 or ink.shape[1] < 2:
        return None
    edges = float(np.hypot(np.diff(ink, axis=1)[:-1], np.diff(ink, axis=0)[:, :-1]).sum())
    if edges < MIN_EDGES:
        return None
    return 2.0 * float(ink.sum()) / edges


def estimate_dpi(ink: np.ndarray) -> float | None:
    """The dpi at which a 12pt formula has this image's stroke width (``STROKE_WIDTHS``),
    within ``DPI_RANGE``."""
    width = stroke_width(ink)
    if width is None:
        return None
    log_dpi = [math.log(d) for d, _ in STROKE_WIDTHS]
    log_width = [math.log(w) for _, w in STROKE_WIDTHS]
    x = math.log(width)
    last = len(log_width) - 2
    segment = next((i for i in range(last) if x < log_width[i + 1]), last)
    (x0, x1), (y0, y1) = log_width[segment : segment + 2], log_dpi[segment : segment + 2]
    low, high = DPI_RANGE
    return min(max(math.exp(y0 + (x - x0) * (y1 - y0) / (x1 - x0)), low), high)


def resize(gray: np.ndarray, factor: float) -> np.ndarray:
    """Scaled by ``factor``: area-averaged when smaller, as a lower dpi's anti-aliasing
    averages; bilinear when larger, as the crop stage's ``scale_dpi`` brings a drawn low dpi
    back up (``crop.resample``), so training saw this kind of enlargement."""
    height, width = gray.shape
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    method = Image.Resampling.BOX if factor < 1 else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(gray, mode="L").resize(size, method))


def _snapped(factor: float) -> float:
    return 1.0 if abs(math.log(factor)) < math.log(SNAP) else factor


def _to_gray(ink: np.ndarray) -> np.ndarray:
    return np.round(255.0 * (1.0 - ink)).astype(np.uint8)
