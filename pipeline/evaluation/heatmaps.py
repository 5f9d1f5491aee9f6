"""Attention heatmaps: where the decoder looked on the formula image for each output token.

A strip of small panels, one per output token, lets a researcher see at a glance whether the
attention walks along the formula the way a reader would, or stalls, jumps back, or smears.
Only numpy and Pillow are needed, so the strips can be drawn without TensorFlow.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipeline.contracts import Attended

# Panels wider than this are scaled down so that a row of eight still fits on a screen.
MAX_PANEL_WIDTH = 320
GAP = 4
LABEL_PAD = 2
BACKGROUND = (232, 232, 232)
# The overlay colour runs from pale yellow (little attention) to deep red (the panel's maximum);
# the formula is multiplied in, so black ink stays black and only the paper is tinted.
_COLD = np.array([255.0, 240.0, 150.0])
_HOT = np.array([215.0, 25.0, 25.0])
_SAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_MAX_STEM = 100


def attention_strip(
    image: np.ndarray,
    attention: np.ndarray,
    grid: tuple[int, int],
    tokens: Sequence[str],
    panels_per_row: int = 8,
) -> Image.Image:
    """One panel per output token, wrapped after panels_per_row panels, as an RGB image.

    image: [H, W] or [H, W, 1] with 1 = ink; attention: [T, rows*cols], row-major over the
    encoder grid; tokens: the T output tokens. Each panel is normalised on its own so that a
    token with diffuse attention still shows where its maximum is.
    """
    ink = _ink_2d(image)
    weights = _check_attention(attention, grid, tokens, ink.shape)
    if panels_per_row < 1:
        raise ValueError(f"panels_per_row must be at least 1, got {panels_per_row}")
    paper = 1.0 - ink  # white paper, dark ink
    font = ImageFont.load_default()
    panels = [_panel(paper, w, grid) for w in weights]
    panel_w, panel_h = _panel_size(ink.shape)
    label_h = _label_height(font)
    n_cols = min(len(panels), panels_per_row)
    n_rows = math.ceil(len(panels) / panels_per_row)
    cell_h = panel_h + label_h
    strip = Image.new(
        "RGB",
        (n_cols * panel_w + (n_cols + 1) * GAP, n_rows * cell_h + (n_rows + 1) * GAP),
        BACKGROUND,
    )
    draw = ImageDraw.Draw(strip)
    for k, (panel, token) in enumerate(zip(panels, tokens, strict=True)):
        x = GAP + (k % panels_per_row) * (panel_w + GAP)
        y = GAP + (k // panels_per_row) * (cell_h + GAP)
        strip.paste(panel.resize((panel_w, panel_h), Image.Resampling.BILINEAR), (x, y))
        _label(draw, font, str(token), x, y + panel_h, panel_w, label_h)
    return strip


def save_heatmaps(samples: Iterable[Attended], out_dir: Path) -> list[Path]:
    """Write one PNG strip per sample into out_dir; returns the paths in the samples' order.

    Two samples whose ids map to the same file name would silently overwrite each other, so
    that is an error.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for sample in samples:
        path = out_dir / f"{safe_filename(sample.id)}.png"
        if path in written:
            raise ValueError(f"two samples map to the same file {path.name!r} (id {sample.id!r})")
        strip = attention_strip(sample.image, sample.attention, sample.grid, sample.tokens)
        strip.save(path, format="PNG")
        written.append(path)
    return written


def safe_filename(sample_id: str) -> str:
    """A file-name stem made of [A-Za-z0-9._-] only, unique per id.

    Ids that had to be changed get a short hash of the original appended, so that "a/b" and
    "a_b" do not collide; ids that are already safe keep their name, which keeps files findable.
    """
    stem = _SAFE_CHARS.sub("_", sample_id).lstrip(".")[:_MAX_STEM]
    if stem == sample_id and stem:
        return stem
    digest = hashlib.sha1(sample_id.encode("utf-8")).hexdigest()[:8]
    return f"{stem or 'sample'}-{digest}"


# -- checks ---------------------------------------------------------------------------------
def _ink_2d(image: np.ndarray) -> np.ndarray:
    """The image as float [H, W] in [0, 1]; a trailing channel of 1 is dropped."""
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"image must be [H, W] or [H, W, 1] and non-empty, got {array.shape}")
    return np.clip(np.nan_to_num(array), 0.0, 1.0)


def _check_attention(
    attention: np.ndarray,
    grid: tuple[int, int],
    tokens: Sequence[str],
    image_shape: tuple[int, int],
) -> np.ndarray:
    """The attention as float [T, L], after checking it against the grid, tokens and image."""
    if len(grid) != 2 or min(grid) < 1:
        raise ValueError(f"grid must be (rows, cols) with both >= 1, got {tuple(grid)}")
    rows, cols = int(grid[0]), int(grid[1])
    if rows > image_shape[0] or cols > image_shape[1]:
        raise ValueError(f"grid {rows}x{cols} is finer than the image {image_shape}")
    weights = np.asarray(attention, dtype=np.float64)
    if weights.ndim != 2:
        raise ValueError(f"attention must be [T, rows*cols], got shape {weights.shape}")
    if weights.shape[1] != rows * cols:
        raise ValueError(
            f"attention width {weights.shape[1]} != rows*cols = {rows}*{cols} = {rows * cols}"
        )
    if weights.shape[0] != len(tokens):
        raise ValueError(
            f"attention has {weights.shape[0]} rows but there are {len(tokens)} tokens"
        )
    if weights.shape[0] == 0:
        raise ValueError("no tokens: nothing to draw")
    if not np.all(np.isfinite(weights)):
        raise ValueError("attention contains NaN or infinite values")
    return weights


# -- drawing --------------------------------------------------------------------------------
def _panel(paper: np.ndarray, weights: np.ndarray, grid: tuple[int, int]) -> Image.Image:
    """The formula tinted by one token's attention, at the image's own size."""
    rows, cols = int(grid[0]), int(grid[1])
    cells = np.clip(weights.reshape(rows, cols), 0.0, None)
    peak = cells.max()
    cells = cells / peak if peak > 0 else cells
    heat = _upsample(cells, paper.shape)[..., None]
    colour = _COLD + (_HOT - _COLD) * heat
    tint = 255.0 * (1.0 - heat) + colour * heat  # white where nothing was attended
    rgb = tint * paper[..., None]
    return Image.fromarray(np.round(rgb).astype(np.uint8), mode="RGB")


def _upsample(cells: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour: every pixel takes the value of the grid cell it falls in.

    Exact cell edges matter more here than smoothness: a blurred overlay would suggest the
    model looked where it did not.
    """
    height, width = shape
    rows, cols = cells.shape
    row_of = np.arange(height) * rows // height
    col_of = np.arange(width) * cols // width
    return cells[row_of][:, col_of]


def _panel_size(shape: tuple[int, int]) -> tuple[int, int]:
    """(width, height) of a panel: the image size, scaled down to MAX_PANEL_WIDTH if wider."""
    height, width = shape
    if width <= MAX_PANEL_WIDTH:
        return width, height
    return MAX_PANEL_WIDTH, max(1, round(height * MAX_PANEL_WIDTH / width))


def _label_height(font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> int:
    left, top, right, bottom = font.getbbox("Ag\\{}|_^")
    return bottom - min(top, 0) + 2 * LABEL_PAD


def _label(
    draw: ImageDraw.ImageDraw,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
    text: str,
    x: int,
    y: int,
    width: int,
    height: int,
) -> None:
    """The token under its panel, centred, cut with '..' if it is wider than the panel."""
    draw.rectangle((x, y, x + width - 1, y + height - 1), fill=(255, 255, 255))
    shown = text
    if draw.textlength(shown, font=font) > width:
        while shown and draw.textlength(shown + "..", font=font) > width:
            shown = shown[:-1]
        shown = shown + ".." if shown else ""
    offset = (width - draw.textlength(shown, font=font)) / 2
    draw.text((x + offset, y + LABEL_PAD), shown, fill=(0, 0, 0), font=font)
