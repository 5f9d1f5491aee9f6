"""Training data that varies: a font and a resampling dpi drawn per training formula from its id
and a seed, with real TeX; validation and test stay at the plain settings."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline import config
from pipeline.config import CropSettings, RenderSettings
from pipeline.contracts import FORMULAS_SCHEMA
from pipeline.corpus import crop, render, texrun, variety

DPI = 120
FORMULAS = {  # id -> (formula, split)
    "a0": (r"\frac { a } { b } + \sqrt { x ^ { 2 } }", "train"),
    "b1": (r"\sum _ { i = 1 } ^ { n } \alpha _ { i }", "train"),
    "c2": (r"\int _ { 0 } ^ { 1 } f ( x ) d x", "test"),
    "d3": (r"y = m x + c", "validation"),
}
TRAIN = frozenset(i for i, (_, split) in FORMULAS.items() if split == "train")


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"))


def sharpness(png: bytes) -> float:
    """Edge contrast per unit of ink: blur lowers it."""
    ink = 255.0 - pixels(png)
    edges = np.abs(np.diff(ink, axis=0)).sum() + np.abs(np.diff(ink, axis=1)).sum()
    return float(edges / ink.sum())


@pytest.fixture(scope="module")
def pages() -> dict[str, dict[str, bytes]]:
    """Every formula in Computer Modern and in Times: one TeX run per font."""
    items = [(i, f) for i, (f, _) in FORMULAS.items()]
    out = {}
    for font in ("cm", "times"):
        results = render.render_formulas(items, RenderSettings(dpi=DPI, font=font))
        assert all(r.status == "ok" for r in results), results
        out[font] = {r.id: r.png for r in results}
    return out


def test_draws_are_fixed_by_id_and_seed_and_spread_over_the_range():
    ids = [f"{i:04x}" for i in range(400)]
    dpis = [variety.drawn_dpi(i, (100, 400), 0) for i in ids]
    assert dpis == [variety.drawn_dpi(i, (100, 400), 0) for i in ids]
    assert dpis != [variety.drawn_dpi(i, (100, 400), 1) for i in ids]
    assert 100 <= min(dpis) < 110 and 380 < max(dpis) <= 400
    assert 0.4 < np.mean(np.array(dpis) < 200) < 0.6  # log-uniform: 200 is the middle
    fonts = [variety.drawn_font(i, ("cm", "times", "palatino"), 0) for i in ids]
    assert {f: fonts.count(f) > 100 for f in ("cm", "times", "palatino")} == dict.fromkeys(
        ("cm", "times", "palatino"), True
    )


def test_only_training_formulas_draw():
    on = CropSettings(scale_dpi=(100, 400))
    factors = variety.scales(FORMULAS, TRAIN, on, 200)
    assert set(factors) == TRAIN and all(0.5 <= f <= 2 for f in factors.values())
    assert variety.scales(FORMULAS, TRAIN, CropSettings(), 200) == {}
    fonts = variety.fonts(FORMULAS, TRAIN, RenderSettings(train_fonts=("times",), font_seed=3))
    assert {fonts[i] for i in FORMULAS if i not in TRAIN} == {"cm"}


def test_every_font_keeps_formulas_on_the_same_lines():
    """render pins TeX's errors on formulas by line number, whatever the font."""
    lines = {texrun.preamble(font).count("\n") for font in config.FONTS}
    assert lines == {texrun.PREAMBLE.count("\n")} and set(texrun.FONT_PACKAGES) == set(config.FONTS)


def test_a_font_changes_the_glyphs_and_the_render_stage_draws_it_for_training_only(pages, tmp_path):
    assert all(not np.array_equal(pixels(pages["cm"][i]), pixels(pages["times"][i])) for i in TRAIN)
    table = [{"id": i, "formula": f, "split": s} for i, (f, s) in FORMULAS.items()]
    pq.write_table(pa.Table.from_pylist(table, schema=FORMULAS_SCHEMA), tmp_path / "f.parquet")
    settings = {"chunks": 1, "dpi": DPI, "train_fonts": ["times"], "font_seed": 1}
    args = [
        "--settings",
        json.dumps({"render": settings}),
        "--formulas",
        str(tmp_path / "f.parquet"),
    ]
    assert render.main([*args, "--chunk", "0", "--out", str(tmp_path / "r.parquet")]) == 0
    drawn = variety.fonts(FORMULAS, TRAIN, config.section("render", settings))
    assert set(drawn[i] for i in TRAIN) == {"cm", "times"}  # this seed draws both
    for row in pq.read_table(tmp_path / "r.parquet").to_pylist():
        assert row["status"] == "ok"
        assert np.array_equal(pixels(row["png"]), pixels(pages[drawn[row["id"]]][row["id"]]))


def test_the_crop_stage_resamples_training_images_only(pages, tmp_path):
    rows = [
        {"id": i, "png": pages["cm"][i], "status": "ok", "reason": None, "error": None}
        for i in FORMULAS
    ]
    rendered = render.to_table([render.Rendered(**r) for r in rows])
    pq.write_table(rendered, tmp_path / "r.parquet")
    table = [{"id": i, "formula": f, "split": s} for i, (f, s) in FORMULAS.items()]
    pq.write_table(pa.Table.from_pylist(table, schema=FORMULAS_SCHEMA), tmp_path / "f.parquet")
    on = {"scale_dpi": [60, 70], "pad": 8, "downsample": 2}
    args = ["--settings", json.dumps({"crop": on, "render": {"dpi": DPI}})]
    args += ["--rendered", str(tmp_path / "r.parquet"), "--formulas", str(tmp_path / "f.parquet")]
    assert crop.main([*args, "--out", str(tmp_path / "c.parquet")]) == 0
    plain = crop.crop_table(rendered, CropSettings())
    cropped = pq.read_table(tmp_path / "c.parquet").to_pylist()
    for row, clean in zip(cropped, plain.to_pylist(), strict=True):
        if row["id"] in TRAIN:  # half the dpi and back: as large, more blurred
            assert abs(row["width"] - clean["width"]) <= 2 and row["png"] != clean["png"]
            assert sharpness(row["png"]) < 0.9 * sharpness(clean["png"])
        else:
            assert row["png"] == clean["png"]
    drawn = crop.crop_table(rendered, CropSettings(scale_to="drawn"), {"a0": 0.5})
    assert abs(drawn.column("width")[0].as_py() - plain.column("width")[0].as_py() / 2) <= 6
    with pytest.raises(SystemExit, match="--formulas needed"):
        crop.main([*args[:4], "--out", str(tmp_path / "x.parquet")])
