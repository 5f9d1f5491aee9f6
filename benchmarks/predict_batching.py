"""`predict` on a folder of mixed-size images: images per second and images per decode call.

Renders ``--count`` real arXiv formulas (../shared/data) at the model's dpi into a folder of
uncropped PNGs, the way a user would hand them over, then predicts the folder twice, side by
side in one run: padding each image to its crop bucket (the default, a few shapes, full
batches) and padding it only to the model's multiple (mixed sizes seldom share a shape).
Uses the trained model from `make run` when there is one, else the default model untrained
(it decodes to ``--max-len``, which only makes both modes slower alike).

    python benchmarks/predict_batching.py [--count 1000] [--model models/best] [--max-len 40]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.config import CropSettings, ModelSettings, RenderSettings  # noqa: E402
from pipeline.contracts import SPECIALS, Vocab  # noqa: E402
from pipeline.corpus import render, texsafe  # noqa: E402
from pipeline.model import bundle, networks, predict  # noqa: E402
from pipeline.model.decode import DecodeSettings  # noqa: E402
from tests.conftest import SHARED_DATA  # noqa: E402


def formulas(count: int) -> list[str]:
    lines = SHARED_DATA.read_text(encoding="utf-8", errors="replace").split("\n")
    return [line for line in lines if line.strip() and texsafe.check_formula(line) is None][:count]


def model_folder(requested: Path, scratch: Path) -> Path:
    """The trained model if there is one, else the default model exported untrained."""
    if requested.is_dir():
        return requested
    tokens = list(SPECIALS) + sorted({t for f in formulas(2000) for t in f.split()})
    vocab_file = scratch / "vocab.json"
    Vocab(tokens).save(vocab_file)
    settings = ModelSettings()
    model = networks.build_model(networks.model_config(settings), len(tokens))
    model(bundle._blank_batch(model.config), training=False)
    folder = scratch / "untrained"
    preprocessing = bundle.Preprocessing(200, CropSettings())
    bundle.export(folder, model, vocab_file, settings, preprocessing, 152, {"step": 0})
    return folder


def render_folder(items: list[str], dpi: int, folder: Path) -> list[Path]:
    results = render.render_formulas(
        [(f"{i:05d}", f) for i, f in enumerate(items)], RenderSettings(dpi=dpi)
    )
    paths = []
    for result in results:
        if result.status == "ok":
            paths.append(folder / f"{result.id}.png")
            paths[-1].write_bytes(result.png)
    return paths


def timed(paths, exported, settings, decoding) -> tuple[float, list[int], int]:
    calls: list[int] = []
    real = predict.decode_batch

    def counted(model, images, how):
        calls.append(len(images))
        return real(model, images, how)

    predict.decode_batch = counted
    try:
        start = time.perf_counter()
        out = predict.predict_paths(paths, exported.model, exported.vocab, settings, decoding)
        return time.perf_counter() - start, calls, sum(p.error is None for p in out)
    finally:
        predict.decode_batch = real


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "best")
    parser.add_argument("--max-len", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        folder = model_folder(args.model, Path(scratch))
        exported = bundle.load(folder)
        trained = "trained" if folder == args.model else "untrained"
        images = Path(scratch) / "images"
        images.mkdir()
        paths = render_folder(formulas(args.count), exported.preprocessing.dpi, images)
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
        print(f"model: {trained} {exported.settings.variant}/{exported.settings.preset}")
        print(f"{len(paths)} rendered formula images, greedy, batch {args.batch_size}\n")
        decoding = DecodeSettings(max_len=args.max_len, beam_width=1, batch_size=args.batch_size)
        bucketed = predict.ModelInput.of(exported)
        modes = {
            "pad to bucket": bucketed,
            "pad to multiple": replace(bucketed, pad_to_bucket=False),
        }
        predict.predict_paths(paths[:4], exported.model, exported.vocab, bucketed, decoding)
        print(f"{'mode':<16} {'images/s':>9} {'calls':>6} {'images/call':>12} {'predicted':>10}")
        for name, settings in modes.items():
            seconds, calls, ok = timed(paths, exported, settings, decoding)
            rate, per_call = len(paths) / seconds, sum(calls) / len(calls)
            print(f"{name:<16} {rate:>9.1f} {len(calls):>6} {per_call:>12.1f} {ok:>10}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
