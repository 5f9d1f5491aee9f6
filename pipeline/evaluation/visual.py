"""Visual match: render gold and predicted formulas the same way and compare the pictures.

Text metrics undercount: ``x ^ 2`` and ``x ^ { 2 }`` differ as tokens but are the same formula.
So both formulas go through the project's own render and crop stages (same dpi, fonts, crop,
padding and downsampling; a prediction is untrusted LaTeX, so it gets the render stage's safety
check and failure isolation, never a TeX run of its own) and the cropped images are compared
with the image metrics of Deng et al. 2017, "Image-to-Markup Generation with Coarse-to-Fine
Attention" (ICML), whose definitions we took from harvardnlp/im2markup
``scripts/evaluation/evaluate_image.py`` and reimplemented:

* **Binarization**: a pixel is ink when its gray level is ``<= 128`` of 255 (``BINARY_THRESHOLD``,
  im2markup's ``img <= 128``). Both images are padded with white at the *bottom* to the same
  height (aligned at the top, as im2markup pads its column strings), and each image becomes the
  sequence of its pixel columns, left to right. Widths are not padded: a difference in width is
  a difference in sequence length.
* **Image edit distance**: the Levenshtein distance between the two column sequences, each
  column compared as a whole (every pixel equal), whitespace columns included, divided by the
  longer sequence's length: 0 is identical, 1 is nothing in common. im2markup logs the corpus
  figure ``1 - sum(distance) / sum(longer length)``; we give the per-sample ratio, averaged over
  samples like our other metrics.
* **Image exact match** (``match``): the column sequences are equal, i.e. the binary images are
  identical (they differ in width otherwise, as cropped images never end in blank columns).
* **Match without whitespace** (``match_ws``): equal after dropping every column without ink
  from both images, so spacing differences (``\\,``, ``\\quad``) are forgiven. Both images blank
  is a match, exactly one blank is not (as in im2markup).

**Tolerance.** im2markup's code (not its paper) forgives small differences in both matches:
columns differing in fewer than 5 pixels count as equal (grouped greedily: each column, gold's
first, joins the first earlier representative within 5 pixels), and in the Levenshtein
alignment of the grouped columns any edit block spanning fewer than 5 *gold* columns is ignored.
We measured what that does to our images. At our default settings (dpi 200, downsample 2) it
calls ``x ^ { 2 }`` / ``x ^ { 3 }``, ``x ^ { 2 }`` / ``x _ { 2 }``, ``a + b`` / ``a - b``,
``f ( x )`` / ``f ( y )`` and ``\\sum _ { i } x _ { i }`` / ``\\sum _ { j } x _ { j }`` matches
(all of them also at 200 dpi without downsampling, the resolution im2markup compares at); on
388 im2latex-100k validation formulas it matched 43% of predictions with one token deleted and
5% of pairs of unrelated formulas, where the exact rule matched none. A match metric that
accepts a wrong sign is not "visually correct", so the default here is ``EXACT`` (no
tolerance). ``DENG_TOLERANCE`` reproduces im2markup's rule (columns within 4 pixels are equal,
stretches of at most 4 differing columns are forgiven) with one fix: im2markup measures a
block by its gold columns only, so inserted columns are forgiven however many there are (a
prediction with symbols appended "matches"); here a stretch of consecutive substitutions,
deletions and insertions is measured by the larger of its gold and predicted widths. The
alignment is the Levenshtein one after cutting the common prefix and suffix, ties broken
towards the diagonal. The edit distance never uses a tolerance (im2markup's does not either).

Speed: each column becomes an integer id (its bit-packed bytes made unique by numpy), the edit
distance is the project's bit-parallel Levenshtein (``metrics.edit_distance``), exact matches
are array comparisons, and only the tolerant mode groups columns (one matrix product) and runs
an alignment (a numpy row at a time).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from pipeline import metrics
from pipeline.cli import ProgressLog
from pipeline.config import CropSettings, RenderSettings
from pipeline.corpus import crop, render

BINARY_THRESHOLD = 128  # gray <= 128 is ink (im2markup's ``img <= 128``)
GOLD, PRED = "gold:", "pred:"  # id prefixes: gold and predictions share one render call


@dataclass(frozen=True)
class Comparison:
    """One pair of images: exact match, match without whitespace, normalized edit distance."""

    match: bool
    match_ws: bool
    edit_distance: float


@dataclass(frozen=True)
class Tolerance:
    """How far two images may differ and still match; zeros demand identical pictures."""

    column_pixels: int = 0  # two columns differing in at most this many pixels are equal
    run_columns: int = 0  # a stretch of differing columns at most this wide is forgiven


EXACT = Tolerance()
DENG_TOLERANCE = Tolerance(column_pixels=4, run_columns=4)  # im2markup's "< 5" and "< 5"
MISMATCH = Comparison(False, False, 1.0)  # a prediction with no image has nothing in common


# --- comparing images ---------------------------------------------------------------------


def binarize(png: bytes) -> np.ndarray:
    """Ink mask (height, width) of a PNG: True where the gray level is <= BINARY_THRESHOLD."""
    gray = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
    return gray <= BINARY_THRESHOLD


def compare_images(
    gold_png: bytes, predicted_png: bytes, tolerance: Tolerance = EXACT
) -> Comparison:
    """Compare two cropped PNGs (as the crop stage writes them) by Deng et al.'s definitions."""
    return compare_masks(binarize(gold_png), binarize(predicted_png), tolerance)


def compare_masks(
    gold: np.ndarray, predicted: np.ndarray, tolerance: Tolerance = EXACT
) -> Comparison:
    """Compare two ink masks; identical images are settled before any distance is computed."""
    columns = _Columns(gold, predicted)
    if np.array_equal(columns.gold, columns.predicted):
        return Comparison(True, True, 0.0)
    longer = max(len(columns.gold), len(columns.predicted))
    distance = metrics.edit_distance(columns.gold.tolist(), columns.predicted.tolist()) / longer
    gold_ids, pred_ids = columns.gold, columns.predicted
    if tolerance.column_pixels > 0:
        grouped = _group_columns(columns.unique, tolerance.column_pixels)
        gold_ids, pred_ids = grouped[gold_ids], grouped[pred_ids]
    gold_ink, pred_ink = columns.inked(columns.gold), columns.inked(columns.predicted)
    run = tolerance.run_columns
    return Comparison(
        match=_aligns_within(gold_ids, pred_ids, run),
        match_ws=_aligns_within(gold_ids[gold_ink], pred_ids[pred_ink], run),
        edit_distance=distance,
    )


class _Columns:
    """Both images' columns as integer ids, equal ids exactly for equal columns.

    Ids are numbered in order of first appearance (gold first), which is the order in which
    im2markup's tolerance grouping visits columns. ``unique[k]`` is the column with id ``k``.
    """

    def __init__(self, gold: np.ndarray, predicted: np.ndarray) -> None:
        height = max(gold.shape[0], predicted.shape[0])
        stacked = np.concatenate([_pad_bottom(gold, height).T, _pad_bottom(predicted, height).T])
        packed = np.ascontiguousarray(np.packbits(stacked, axis=1))
        keys = packed.view(np.dtype((np.void, packed.shape[1]))).ravel()
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        order = np.argsort(first)
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        ids = rank[inverse.ravel()]
        self.gold, self.predicted = ids[: gold.shape[1]], ids[gold.shape[1] :]
        self.unique = stacked[first[order]]
        self._has_ink = self.unique.any(axis=1)

    def inked(self, ids: np.ndarray) -> np.ndarray:
        """Mask of the columns that hold any ink (the rest are whitespace columns)."""
        return self._has_ink[ids]


def _pad_bottom(mask: np.ndarray, height: int) -> np.ndarray:
    """Pad with white rows below: im2markup aligns images of different heights at the top."""
    return np.pad(mask, ((0, height - mask.shape[0]), (0, 0)))


def _group_columns(unique: np.ndarray, max_pixels: int) -> np.ndarray:
    """Map each column id to its group: the first earlier representative within tolerance.

    Pairwise Hamming distances come from one matrix product (|a| + |b| - 2 a.b); only columns
    with an earlier near neighbour need the sequential greedy step.
    """
    bits = unique.astype(np.float32)
    ones = bits.sum(axis=1)
    hamming = ones[:, None] + ones[None, :] - 2.0 * (bits @ bits.T)
    near_earlier = np.tril(hamming < max_pixels + 0.5, k=-1)
    group = np.arange(len(unique))
    is_representative = np.ones(len(unique), dtype=bool)
    for column in np.flatnonzero(near_earlier.any(axis=1)):
        hits = near_earlier[column] & is_representative
        first = int(hits.argmax())
        if hits[first]:
            group[column] = first
            is_representative[column] = False
    return group


def _aligns_within(gold: np.ndarray, predicted: np.ndarray, max_run: int) -> bool:
    """True when an optimal alignment has no stretch of differing columns wider than max_run."""
    if len(gold) == 0 or len(predicted) == 0:
        return len(gold) == len(predicted)
    gold, predicted = _strip_common_ends(gold, predicted)
    if max(len(gold), len(predicted)) <= max_run:
        return True  # also: nothing left to differ
    if max_run == 0:
        return False
    if metrics.edit_distance(gold.tolist(), predicted.tolist()) <= max_run:
        return True  # too few edits in total to make one stretch too wide
    return _widest_run(gold, predicted, max_run) <= max_run


def _strip_common_ends(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut the shared prefix and suffix: matching them is always part of an optimal alignment."""
    shorter = min(len(a), len(b))
    differ = np.flatnonzero(a[:shorter] != b[:shorter])
    start = int(differ[0]) if differ.size else shorter
    tail = shorter - start
    differ = np.flatnonzero(a[len(a) - tail :][::-1] != b[len(b) - tail :][::-1])
    end = int(differ[0]) if differ.size else tail
    return a[start : len(a) - end], b[start : len(b) - end]


def _distance_table(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The full Levenshtein table, one vectorized row at a time, and the substitution costs.

    Within a row, D[i, j] = min over k <= j of (T[k] + j - k), where T holds the costs reached
    from the row above; a running minimum of T - k resolves the left-to-right dependency.
    """
    cost = (a[:, None] != b[None, :]).astype(np.int32)
    steps = np.arange(len(b) + 1, dtype=np.int32)
    table = np.empty((len(a) + 1, len(b) + 1), dtype=np.int32)
    table[0] = steps
    for i in range(1, len(a) + 1):
        above, row = table[i - 1], table[i]
        row[0] = i
        np.minimum(above[1:] + 1, above[:-1] + cost[i - 1], out=row[1:])
        row -= steps
        np.minimum.accumulate(row, out=row)
        row += steps
    return table, cost


def _widest_run(a: np.ndarray, b: np.ndarray, limit: int) -> int:
    """Walk an optimal alignment back from the end; return its widest stretch of edits.

    A stretch is a maximal run of substitutions, deletions and insertions; its width is the
    larger of the columns it spans in ``a`` and in ``b``. The walk stops once a stretch is wider
    than ``limit``, since the caller only asks whether one is.
    """
    table, cost = _distance_table(a, b)
    i, j, span_a, span_b, widest = len(a), len(b), 0, 0, 0
    while (i or j) and widest <= limit:
        here = table[i, j]
        if i and j and table[i - 1, j - 1] + cost[i - 1, j - 1] == here:
            i, j = i - 1, j - 1
            if cost[i, j] == 0:
                span_a = span_b = 0
                continue
            span_a, span_b = span_a + 1, span_b + 1
        elif i and table[i - 1, j] + 1 == here:
            i, span_a = i - 1, span_a + 1
        else:
            j, span_b = j - 1, span_b + 1
        widest = max(widest, span_a, span_b)
    return widest


# --- rendering ----------------------------------------------------------------------------


def render_cropped(
    items: Sequence[tuple[str, str]],
    render_settings: RenderSettings,
    crop_settings: CropSettings,
) -> dict[str, bytes | str]:
    """id -> cropped PNG bytes, or a reason ``'category'`` / ``'category: detail'``.

    Everything goes through ``render.render_formulas`` (safety check, failure isolation) and
    ``crop.crop_image``, so a picture here is the picture the data stages would have made.
    Categories: ``empty`` (nothing to render), the render stage's reasons (``unsafe``,
    ``tex_error``, ``timeout``, ``multipage``, ``rasterize_error``, ``blank``), and
    ``corrupt_image`` or ``blank`` from cropping. Every id in comes out exactly once.
    """
    ids = [item_id for item_id, _ in items]
    if len(set(ids)) != len(ids):
        raise ValueError("render_cropped: ids must be unique")
    out: dict[str, bytes | str] = {}
    to_render = []
    for item_id, formula in items:
        if formula and formula.strip():
            to_render.append((item_id, formula))
        else:
            out[item_id] = "empty"
    progress = ProgressLog("evaluate: rendering for visual match", len(to_render), "formulas")
    for result in render.render_formulas(to_render, render_settings, progress):
        out[result.id] = _cropped(result, crop_settings)
    return {item_id: out[item_id] for item_id in ids}


def _cropped(result: render.Rendered, settings: CropSettings) -> bytes | str:
    """Crop one render result, or say why there is no picture."""
    cropped = crop.crop_rendered(result.__dict__, settings)
    if cropped.image is None:
        return f"{cropped.reason}: {cropped.error}" if cropped.error else str(cropped.reason)
    return crop.encode_png(cropped.image)


# --- scoring predictions ------------------------------------------------------------------


def visual_match(
    gold: Mapping[str, str],
    predicted: Mapping[str, str],
    render_settings: RenderSettings,
    crop_settings: CropSettings,
    gold_images: Mapping[str, bytes] | None = None,
    *,
    tolerance: Tolerance = EXACT,
) -> tuple[list[dict], dict]:
    """Per-sample rows (one per gold id, in gold's order) and a summary of the visual scores.

    Gold and predictions are rendered in one ``render_formulas`` call (one TeX run per batch
    instead of two). Gold images passed in ``gold_images`` are used as they are; gold ids
    without one are rendered. A gold formula that cannot be rendered is not the model's fault:
    its row says why, and it is left out of the summary and counted as ``gold_render_failures``.
    A missing, empty or non-rendering prediction is a mismatch with edit distance 1.0.
    ``tolerance=DENG_TOLERANCE`` gives im2markup's lenient matches (see the module docstring).
    """
    given = {i: png for i, png in (gold_images or {}).items() if png is not None}
    items = [(GOLD + i, f) for i, f in gold.items() if i not in given]
    items += [(PRED + i, predicted[i]) for i in gold if i in predicted]
    pictures = render_cropped(items, render_settings, crop_settings)
    rows = []
    for item_id in gold:
        gold_picture = given.get(item_id, pictures.get(GOLD + item_id))
        pred_picture = pictures.get(PRED + item_id, "missing")
        rows.append(_row(item_id, gold_picture, pred_picture, tolerance))
    return rows, summarize(rows)


def _row(
    item_id: str, gold: bytes | str | None, predicted: bytes | str, tolerance: Tolerance
) -> dict:
    """One sample's row; the scores are None when gold has no picture to compare with."""
    gold_png = gold if isinstance(gold, bytes) else None
    pred_png = predicted if isinstance(predicted, bytes) else None
    row = {
        "id": item_id,
        "compiled": pred_png is not None,
        "image_match": None,
        "image_match_ws": None,
        "image_edit_distance": None,
        "render_error": None if pred_png is not None else str(predicted),
        "predicted_png": pred_png,
        "gold_png": gold_png,
    }
    if gold_png is None:
        return row | {"render_error": f"gold {gold}"}
    result = MISMATCH if pred_png is None else compare_images(gold_png, pred_png, tolerance)
    return row | {
        "image_match": result.match,
        "image_match_ws": result.match_ws,
        "image_edit_distance": result.edit_distance,
    }


def summarize(rows: Sequence[dict]) -> dict:
    """Means over the samples whose gold rendered; None where there is no such sample."""
    scored = [r for r in rows if r["gold_png"] is not None]
    count = len(scored)

    def mean(key: str) -> float | None:
        return sum(float(r[key]) for r in scored) / count if count else None

    return {
        "visual_samples": count,
        "compile_rate": mean("compiled"),
        "image_match": mean("image_match"),
        "image_match_ws": mean("image_match_ws"),
        "image_edit_distance": mean("image_edit_distance"),
        "gold_render_failures": len(rows) - count,
    }
