"""Training throughput per model variant, beside the input pipeline's, in one run.

For each variant: the real train step (the trainer's own compiled, distributed step) on real
shards, samples/s after warm-up; then the input pipeline alone with the same settings, images/s.
The ratio says whether training waits on input (it should not: the target is at least 10x).

    python benchmarks/train_throughput.py [--shards data/shards] [--vocab data/vocab/vocab.json]
        [--variants seq2seq nopool strips] [--preset small] [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def measure_variant(variant: str, args: argparse.Namespace) -> dict:
    from pipeline import config
    from pipeline.config import ModelSettings, TrainSettings
    from pipeline.model.trainer import Trainer, preprocessing_of

    model = ModelSettings(variant=variant, preset=args.preset)
    settings = TrainSettings(batch_size=args.batch_size)
    preprocessing = preprocessing_of(config.load(ROOT / "params.yaml"))
    trainer = Trainer(model, settings, args.shards, args.vocab, preprocessing)
    trainer.build()
    step = trainer.make_train_step()
    batches = iter(trainer.train_data(epoch=0, skip=0).repeat())
    for _ in range(args.warmup):
        step(*next(batches))
    samples, start = 0, time.perf_counter()
    for _ in range(args.steps):
        images, tokens = next(batches)
        loss, _ = step(images, tokens)
        samples += int(images.shape[0])
    float(loss)
    train_rate = samples / (time.perf_counter() - start)
    return {
        "variant": variant,
        "parameters": trainer.model.count_params(),
        "train_samples_per_s": round(train_rate, 1),
        "input_images_per_s": round(input_rate(trainer, args), 1),
    }


def input_rate(trainer, args: argparse.Namespace) -> float:
    batches = iter(trainer.train_data(epoch=1, skip=0).repeat())
    for _ in range(5):
        next(batches)
    images, start = 0, time.perf_counter()
    for _ in range(args.input_batches):
        images += int(next(batches)[0].shape[0])
    return images / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shards", type=Path, default=Path("data/shards"))
    parser.add_argument("--vocab", type=Path, default=Path("data/vocab/vocab.json"))
    parser.add_argument("--variants", nargs="+", default=["seq2seq", "nopool", "strips"])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--input-batches", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not args.shards.is_dir():
        print(f"skipped: no shards at {args.shards} (run `make run` or `dvc repro shards` first)")
        return 0
    rows = [measure_variant(v, args) for v in args.variants]
    print(f"training throughput on CPU, preset {args.preset}, batch {args.batch_size}")
    print(
        f"{'variant':10} {'params':>10} {'train samples/s':>16} {'input images/s':>15} {'ratio':>6}"
    )
    for r in rows:
        ratio = r["input_images_per_s"] / r["train_samples_per_s"]
        print(
            f"{r['variant']:10} {r['parameters']:>10,} {r['train_samples_per_s']:>16} "
            f"{r['input_images_per_s']:>15} {ratio:>5.0f}x"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
