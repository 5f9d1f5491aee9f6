"""Input pipeline throughput: images/s that ``make_dataset`` delivers, with no model attached.

The number to compare with the training step's consumption (images/s of a train step): if the
pipeline is not several times faster, training waits on input. It runs the real training settings
(shuffle, repeat, bucketed batches of 32) over the shards of one split, after a few warm-up
batches so that file opening and tf.function tracing are not counted.

``--augment P`` measures the cost of training-image augmentation (``pipeline/model/augment.py``):
the plain pipeline, then every kind at probability P, then each kind alone at probability 1.

    python benchmarks/input_pipeline.py [--shards data/shards] [--split train] [--batches 300]
    python benchmarks/input_pipeline.py --augment 0.5 --batches 100
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import fields
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.config import AugmentSettings  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shards", type=Path, default=Path("data/shards"), help="shards dir")
    parser.add_argument("--split", default="train")
    parser.add_argument("--batches", type=int, default=300, help="timed batches")
    parser.add_argument("--warmup", type=int, default=10, help="untimed batches first")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pad-multiple", type=int, default=32)
    parser.add_argument("--fixed-height", type=int, default=None)
    parser.add_argument(
        "--augment", type=float, default=None, help="also measure augmentation at this probability"
    )
    return parser.parse_args(argv)


def measure(args: argparse.Namespace, augment: AugmentSettings | None = None) -> tuple[int, float]:
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
            augment=augment,
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
    if args.augment is not None:
        compare_augmentation(args, images / seconds)
    return 0


def compare_augmentation(args: argparse.Namespace, plain: float) -> None:
    """Images/s with every kind at ``args.augment``, then each kind alone, beside the plain."""
    kinds = [f.name for f in fields(AugmentSettings) if f.name.startswith("p_")]
    runs = {"every kind": AugmentSettings(**dict.fromkeys(kinds, args.augment))}
    runs |= {name.removeprefix("p_"): AugmentSettings(**{name: 1.0}) for name in kinds}
    print(f"{'augmentation':<24} {'images/s':>9} {'vs plain':>9}")
    print(f"{'none':<24} {plain:>9.0f} {1:>9.2f}")
    for label, settings in runs.items():
        p = args.augment if label == "every kind" else 1.0
        images, seconds = measure(args, settings)
        rate = images / seconds
        print(f"{f'{label} (p={p:g})':<24} {rate:>9.0f} {rate / plain:>9.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
