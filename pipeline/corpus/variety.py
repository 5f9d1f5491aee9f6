"""Per-formula draws that make training images vary: which font a formula is set in, and at
which dpi its image is resampled.

A draw depends on the formula's content id, a seed from the params and what is drawn, nothing
else: a formula keeps its draw when the corpus grows or is split into other chunks, the same
params give the same images on any machine, and DVC's cache of the render and crop stages holds.
Only training formulas draw; validation and test stay at the plain settings, so their numbers
remain comparable with the papers'.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

from pipeline.config import CropSettings, RenderSettings
from pipeline.contracts import SPLITS

TRAIN = SPLITS[0]  # the one split whose images vary


def uniform(formula_id: str, seed: int, what: str) -> float:
    """A number in [0, 1) fixed by the id, the seed and the name of the draw."""
    digest = hashlib.sha256(f"{what}\0{seed}\0{formula_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def drawn_dpi(formula_id: str, dpi_range: tuple[int, int], seed: int) -> float:
    """Log-uniform in the range: as many images between 100 and 200 dpi as between 200 and 400,
    as a screenshot is as likely zoomed out by some factor as zoomed in by it."""
    low, high = dpi_range
    return math.exp(math.log(low) + uniform(formula_id, seed, "dpi") * math.log(high / low))


def drawn_font(formula_id: str, fonts: tuple[str, ...], seed: int) -> str:
    return fonts[int(uniform(formula_id, seed, "font") * len(fonts))]


def train_ids(ids: Iterable[str], splits: Iterable[str]) -> frozenset[str]:
    return frozenset(i for i, split in zip(ids, splits, strict=True) if split == TRAIN)


def fonts(ids: Iterable[str], training: frozenset[str], settings: RenderSettings) -> dict[str, str]:
    """Each formula's font: a training formula draws from ``[font, *train_fonts]``."""
    choices = (settings.font, *settings.train_fonts)
    seed = settings.font_seed
    return {i: drawn_font(i, choices, seed) if i in training else settings.font for i in ids}


def scales(
    ids: Iterable[str], training: frozenset[str], settings: CropSettings, render_dpi: int
) -> dict[str, float]:
    """Each training formula's resampling factor (its drawn dpi over the render dpi); none
    without ``scale_dpi``, and none for validation and test."""
    if settings.scale_dpi is None:
        return {}
    return {
        i: drawn_dpi(i, settings.scale_dpi, settings.scale_seed) / render_dpi
        for i in ids
        if i in training
    }
