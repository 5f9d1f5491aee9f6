"""Input pipeline throughput: images/s that ``make_dataset`` delivers, with no model attached.

The number to compare with the training step's consumption (images/s of a train step): if the
pipeline is not several times faster, training waits on input. It runs the real training settings
(shuffle, repeat, bucketed batches of 32) over the shards of one split, after a few warm-up
batches so that file opening and tf.function tracing are not counted.

    python benchmarks/input_pipeline.py [--shards data/shards] [--split train] [--batches 300]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shards", type=Path, default=Path("data/shards"), help="shards dir")
    parser.add_argument("--split", default="train")
    parser.add_argument("--batches", type=int, default=300, help="timed batches")
    parser.add_argument("--warmup", type=int, default=10, help="untimed batches first")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pad-multiple", type=int, default=32)
    parser.add_argument("--fixed-height", type=int, default=None)
    return parser.parse_args(argv)


def measure(args: argparse.Namespace) -> tuple[int, float]:
    """Images and seconds over ``args.batches`` batches after the warm-up."""
    from pipeline.contracts import shard_paths
    from pipeline.model import dataset  # late: importing tensorflow takes seconds

    paths = shard_paths(args.shards, args.split)
    batches = iter(
        dataset.make_dataset(
            paths,
            batch_size=args.batch_size,
            pad_multiple=args.pad_multiple,
            fixed_height=args.fixed_height,
            shuffle=True,
            repeat=True,
        )
    )
    for _ in range(args.warmup):
        next(batches)
    images, start = 0, time.perf_counter()
    for _ in range(args.batches):
        images += int(next(batches)[0].shape[0])
    return images, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.shards.is_dir():
        print(f"skipped: no shards at {args.shards} (run the pipeline first)")
        return 0
    images, seconds = measure(args)
    print(
        f"input pipeline: {images} images in {args.batches} batches, {seconds:.2f} s, "
        f"{images / seconds:.0f} images/s (split {args.split}, batch {args.batch_size})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
