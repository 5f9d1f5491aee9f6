"""Trained models on screenshots: another renderer, five scales, JPEG and a dark theme.

A person's screenshot is not one of our renders. This scores models on real test formulas made
by another chain than training's (pdflatex + pdftoppm, ``screenshots.py``, cut out with uneven
margins) at 100, 150, 200, 300 and 600 dpi, as JPEG quality 60 and light-on-dark at 200 dpi,
beside the clean figure: the same formulas rendered by training's own renderer at the model's
dpi. Each model is run three ways: "as-is" (the images cropped as the crop stage would, what
``predict --as-is`` does, and all ``predict`` did before screenshots were normalized),
"normalized" (``predict``'s default: ``pipeline.corpus.screenshot``) and "+tries" (``predict
--try-scales``: also 0.85x and 1.18x the estimated size, the best beam score kept). The
formulas are the first ``--count`` test rows of the model's own step0 table whose tokens the
model knows.

    python benchmarks/robustness.py --model models/best [--model OTHER ...]
        [--step0 data/step0/formulas.parquet] [--count 300] [--beam-width 5] [--json FILE]
        [--cache DIR] [--modes as-is normalized +tries]
    python benchmarks/robustness.py --calibrate   # screenshot.STROKE_WIDTHS, measured anew
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import pickle
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import screenshots  # noqa: E402
from screenshots import Look  # noqa: E402

from pipeline import metrics  # noqa: E402
from pipeline.config import RenderSettings  # noqa: E402
from pipeline.contracts import UNK_ID  # noqa: E402
from pipeline.corpus import render, screenshot  # noqa: E402
from pipeline.model import bundle  # noqa: E402
from pipeline.model.decode import DecodeSettings  # noqa: E402
from pipeline.model.predict import (  # noqa: E402
    SCALE_TRIES,
    ImageError,
    ModelInput,
    Prediction,
    better,
    decode_images,
    prepare_tries,
)

LOOKS = (
    Look(100),
    Look(150),
    Look(200),
    Look(300),
    Look(600),
    Look(200, jpeg_quality=60),
    Look(200, dark=True),
)
CLEAN = "clean"
MODES = ("as-is", "normalized", "+tries")
CALIBRATION_DPI = (100, 150, 200, 300, 600)


def test_formulas(step0: Path, count: int, known: set[str]) -> list[str]:
    table = pq.read_table(step0, columns=["formula", "split"]).to_pydict()
    rows = [f for f, s in zip(table["formula"], table["split"], strict=True) if s == "test"]
    return [f for f in rows if set(f.split()) <= known][:count]


def clean_images(formulas: Sequence[str], settings: RenderSettings) -> list[bytes | None]:
    """Training's renderer at the model's dpi and font: the figure the papers would quote."""
    rendered = render.render_formulas([(str(i), f) for i, f in enumerate(formulas)], settings)
    return [r.png for r in rendered]


def cached(folder: Path | None, formulas: list[str], look: Look) -> list[bytes]:
    """The screenshots of ``formulas`` in ``look``, kept in ``folder`` (if given) under a name
    made of both, so a second model or a rerun does not wait for pdflatex and pdftoppm again."""
    if folder is None:
        return screenshots.screenshots(formulas, look)
    key = hashlib.sha256(json.dumps([formulas, look.name]).encode()).hexdigest()[:16]
    path = folder / f"{key}.pickle"
    if path.is_file():
        return pickle.loads(path.read_bytes())
    images = screenshots.screenshots(formulas, look)
    folder.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(images))
    return images


def score(
    images: Sequence[bytes | None],
    references: Sequence[str],
    exported: bundle.Bundle,
    settings: ModelInput,
    decoding: DecodeSettings,
) -> dict:
    """Every formula scored: one the model cannot take counts as an empty prediction. With
    several scale tries, each image's best-scored output is kept, as ``predict`` keeps it."""
    labelled, refused = [], 0
    for index, data in enumerate(images):
        try:
            if data is None:
                raise ImageError("no image")
            labelled += [(str(index), image) for image in prepare_tries(data, settings)]
        except ImageError:
            refused += 1
    kept: dict[str, Prediction] = {}
    for prediction in decode_images(labelled, exported.model, exported.vocab, decoding):
        kept[prediction.path] = better(kept.get(prediction.path, prediction), prediction)
    hypotheses = [kept[str(i)].latex or "" if str(i) in kept else "" for i in range(len(images))]
    scores = metrics.score_corpus(list(references), hypotheses)
    return {"bleu": scores["bleu"], "exact": scores["exact_match"], "refused": refused}


def run_model(
    model_dir: Path,
    formulas: list[str],
    conditions: dict[str, list[bytes | None]],
    beam_width: int,
    modes: Sequence[str] = MODES,
) -> list[dict]:
    exported = bundle.load(model_dir)
    decoding = DecodeSettings(exported.max_len, beam_width, 0.6, 16)
    settings_of = {
        "as-is": ModelInput.of(exported, normalize=False),
        "normalized": ModelInput.of(exported),
        "+tries": ModelInput.of(exported, scale_tries=SCALE_TRIES),
    }
    rows = []
    for mode in modes:
        settings = settings_of[mode]
        started = time.monotonic()
        cells = {
            name: score(images, formulas, exported, settings, decoding)
            for name, images in conditions.items()
        }
        seconds = round(time.monotonic() - started, 1)
        rows.append({"model": str(model_dir), "mode": mode, "cells": cells, "seconds": seconds})
        print(f"  {model_dir} {mode}: {seconds} s", file=sys.stderr)
    return rows


def print_table(rows: list[dict], names: list[str], key: str) -> None:
    """Ratios are to the clean figure of the same model as-is (what it scores on test), or of
    the row itself when as-is was not run."""
    print(f"\n{key}  (in brackets: ratio to the model's clean {key} as-is)")
    print(f"{'model':28} {'mode':10} " + " ".join(f"{n:>15}" for n in names))
    clean = {r["model"]: r["cells"][CLEAN][key] for r in rows if r["mode"] == "as-is"}
    for row in rows:
        cells = []
        for name in names:
            value = row["cells"][name][key]
            base = clean.get(row["model"], row["cells"][CLEAN][key])
            ratio = f"({value / base:.2f})" if base else ""
            cells.append(f"{value:8.3f}{ratio:>7}")
        print(f"{Path(row['model']).name[:28]:28} {row['mode']:10} " + " ".join(cells))


def calibrate(step0: Path, count: int) -> None:
    """Median stroke width of training-renderer images at each dpi: the STROKE_WIDTHS table."""
    table = pq.read_table(step0, columns=["formula", "split"]).to_pydict()
    formulas = [f for f, s in zip(table["formula"], table["split"], strict=True) if s == "test"]
    items = [(str(i), f) for i, f in enumerate(formulas[:count])]
    for dpi in CALIBRATION_DPI:
        widths = []
        for rendered in render.render_formulas(items, RenderSettings(dpi=dpi)):
            if rendered.png is None:
                continue
            gray = np.asarray(Image.open(io.BytesIO(rendered.png)).convert("L"))
            width = screenshot.stroke_width(screenshot.ink_map(gray)[0])
            if width is not None:
                widths.append(width)
        print(f"({dpi}, {statistics.median(widths):.3f}),  # {len(widths)} formulas")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, action="append", help="repeat for several")
    parser.add_argument("--step0", type=Path, default=ROOT / "data/step0/formulas.parquet")
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--beam-width", type=int, default=5)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument("--cache", type=Path, help="keep the screenshots here for a rerun")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    args = parser.parse_args(argv)
    if args.calibrate:
        calibrate(args.step0, args.count)
        return 0
    models = args.model or [ROOT / "models/best"]
    first = bundle.load(models[0])
    known = set(first.vocab.tokens) - {first.vocab.tokens[UNK_ID]}
    formulas = test_formulas(args.step0, args.count, known)
    print(f"{len(formulas)} test formulas from {args.step0}", file=sys.stderr)
    started = time.monotonic()
    conditions = {CLEAN: clean_images(formulas, first.preprocessing.render_settings())}
    for look in LOOKS:
        conditions[look.name] = cached(args.cache, formulas, look)
    print(f"images made in {time.monotonic() - started:.0f} s", file=sys.stderr)
    rows = [
        row
        for model in models
        for row in run_model(model, formulas, conditions, args.beam_width, args.modes)
    ]
    names = list(conditions)
    print(
        f"{len(formulas)} real test formulas, beam width {args.beam_width}; columns: "
        f"{CLEAN} = training's renderer at the model's dpi, the rest pdflatex + pdftoppm"
    )
    print_table(rows, names, "bleu")
    print_table(rows, names, "exact")
    refused = {
        f"{Path(r['model']).name} {r['mode']}": {
            n: c["refused"] for n, c in r["cells"].items() if c["refused"]
        }
        for r in rows
    }
    print(f"\nimages a model could not take (scored as empty): {refused}")
    if args.json:
        args.json.write_text(json.dumps({"formulas": len(formulas), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
