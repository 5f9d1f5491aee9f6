"""Screenshots of formulas made by another renderer than training's: pdflatex + pdftoppm.

Training renders with latex + dvipng at one dpi; a person's screenshot comes from a PDF viewer
(or a browser, or a slide) at whatever zoom they had. This makes such images for the robustness
benchmark: every formula on its own page of one PDF (one pdflatex run), rasterized by poppler at
the dpi asked, cut out with uneven margins (as a person's selection would be), and optionally
re-encoded as JPEG or shown light-on-dark. Used by ``robustness.py``.
"""

from __future__ import annotations

import io
import random
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.corpus import texrun

TIMEOUT_S = 600


@dataclass(frozen=True)
class Look:
    """How a screenshot is shown: dpi, JPEG quality (None: PNG), colours (gray levels)."""

    dpi: int
    jpeg_quality: int | None = None
    dark: bool = False

    @property
    def name(self) -> str:
        extra = f" jpeg{self.jpeg_quality}" if self.jpeg_quality else ""
        return f"{self.dpi} dpi{extra}{' dark' if self.dark else ''}"


def render_pages(formulas: Sequence[str], dpi: int, scratch: Path) -> list[np.ndarray]:
    """Each formula's page as 8-bit gray, in order; refuses when pages and formulas disagree."""
    body = "\n\\newpage\n".join(texrun.display_math(f) for f in formulas)
    (scratch / "s.tex").write_text(texrun.PREAMBLE + body + "\n\\end{document}\n")
    texrun.run_tool(["pdflatex", "-interaction=batchmode", "s.tex"], scratch, TIMEOUT_S)
    if not (scratch / "s.pdf").exists():
        raise RuntimeError("pdflatex made no PDF")
    for old in scratch.glob("p-*.png"):
        old.unlink()
    texrun.run_tool(["pdftoppm", "-r", str(dpi), "-gray", "-png", "s.pdf", "p"], scratch, TIMEOUT_S)
    pages = sorted(scratch.glob("p-*.png"), key=lambda p: int(p.stem.split("-")[1]))
    if len(pages) != len(formulas):
        raise RuntimeError(f"{len(pages)} pages for {len(formulas)} formulas")
    return [np.asarray(Image.open(p).convert("L")) for p in pages]


def cut_out(page: np.ndarray, rng: random.Random, dpi: int) -> np.ndarray:
    """The ink with a margin of 0.05 to 0.3 inch on each side, drawn separately per side."""
    rows = np.flatnonzero((page < 250).any(axis=1))
    cols = np.flatnonzero((page < 250).any(axis=0))
    if rows.size == 0:
        return page
    top, bottom, left, right = (round(rng.uniform(0.05, 0.3) * dpi) for _ in range(4))
    padded = np.pad(page, max(top, bottom, left, right) + 1, constant_values=255)
    shift = max(top, bottom, left, right) + 1
    return padded[
        rows[0] + shift - top : rows[-1] + shift + bottom + 1,
        cols[0] + shift - left : cols[-1] + shift + right + 1,
    ]


def encode(gray: np.ndarray, look: Look) -> bytes:
    """The file a person would have: dark mode shows light ink on a near-black background."""
    if look.dark:
        gray = (30 + (255 - gray.astype(np.float32)) * (200 / 255)).round().astype(np.uint8)
    image = Image.fromarray(gray, mode="L")
    buffer = io.BytesIO()
    if look.jpeg_quality:
        image.convert("RGB").save(buffer, format="JPEG", quality=look.jpeg_quality)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def screenshots(formulas: Sequence[str], look: Look, seed: int = 0) -> list[bytes]:
    """One file's bytes per formula, the margins drawn from ``seed`` (the same for every look)."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as scratch:
        pages = render_pages(formulas, look.dpi, Path(scratch))
    return [encode(cut_out(page, rng, look.dpi), look) for page in pages]
