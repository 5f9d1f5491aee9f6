"""Decode latency per image (batch 1) and batched throughput, greedy vs beam, on this CPU.

Uses a trained, exported model and real test images (run `make run` first):

    python benchmarks/decode_speed.py [--model models/best] [--shards data/shards]
        [--widths 1 5 10] [--latency-images 32] [--throughput-images 256] [--batch-size 64]

Each setting is timed after a warm-up call (graph tracing is a one-off cost, not latency), and
the settings are interleaved round by round so machine noise hits them alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.contracts import shard_paths  # noqa: E402
from pipeline.model import bundle, dataset, decode  # noqa: E402


def test_batches(exported: bundle.Bundle, shards: Path, batch_size: int, limit: int):
    data = dataset.make_dataset(
        shard_paths(shards, "test"),
        batch_size=batch_size,
        pad_multiple=exported.pad_multiple,
        fixed_height=exported.fixed_height,
        canvas=exported.canvas,
    )
    batches, seen = [], 0
    for images, _ in data:
        batches.append(images[: limit - seen])
        seen += int(batches[-1].shape[0])
        if seen >= limit:
            break
    return batches


def timed(model, batches, settings: decode.DecodeSettings) -> tuple[float, int]:
    """Seconds to decode every batch, and the tokens emitted (decode length drives cost)."""
    tokens = 0
    start = time.perf_counter()
    for images in batches:
        ids, _, _ = decode.decode_batch(model, images, settings)
        tokens += int((ids > 0).sum())
    return time.perf_counter() - start, tokens


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "best")
    parser.add_argument("--shards", type=Path, default=ROOT / "data" / "shards")
    parser.add_argument("--widths", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--latency-images", type=int, default=32)
    parser.add_argument("--throughput-images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    if not args.model.is_dir():
        print(f"skipped: no trained model at {args.model} (run `make run` first)")
        return 0
    exported = bundle.load(args.model)
    model = exported.model
    singles = test_batches(exported, args.shards, 1, args.latency_images)
    batched = test_batches(exported, args.shards, args.batch_size, args.throughput_images)
    max_len = exported.max_len
    settings = [decode.DecodeSettings(max_len, w, 0.6, args.batch_size) for w in args.widths]
    for s in settings:  # trace every graph shape once before timing
        for images in {tuple(b.shape): b for b in singles + batched}.values():
            decode.decode_batch(model, images, s)
    latency = {s.name: [] for s in settings}
    throughput = {s.name: [] for s in settings}
    for _ in range(args.rounds):
        for s in settings:
            seconds, _ = timed(model, singles, s)
            latency[s.name].append(seconds / len(singles))
            seconds, tokens = timed(model, batched, s)
            throughput[s.name].append((args.throughput_images / seconds, tokens))
    variant, preset = exported.settings.variant, exported.settings.preset
    print(f"decode speed on CPU, {variant} ({preset}), max_len {max_len}")
    print(f"{'search':8} {'latency ms/img':>15} {'batched img/s':>14} {'tokens/img':>11}")
    for s in settings:
        ms = 1000 * statistics.median(latency[s.name])
        rate = statistics.median(r for r, _ in throughput[s.name])
        tokens = throughput[s.name][-1][1] / args.throughput_images
        print(f"{s.name:8} {ms:>15.1f} {rate:>14.1f} {tokens:>11.1f}")
    print(
        f"latency: batch 1 over {len(singles)} test images; throughput: batches of "
        f"{args.batch_size} over {args.throughput_images}; median of {args.rounds} rounds"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
