"""Train stage: Parquet shards -> the best model by validation score, exported for evaluation.

The same code runs on a laptop's CPU and on several GPUs (``pipeline.devices``). Training can be
killed at any moment (``kill -9``) and started again: checkpoints every ``checkpoint_every`` steps
hold the model, the optimizer, the position in the epoch and the time spent, and live in a folder
named by a hash of everything that shapes the run, so a changed setting never resumes a stale one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline import cli
from pipeline.schedule import Schedule

log = logging.getLogger("pipeline")


@dataclass(frozen=True)
class TrainSettings:
    batch_size: int = 32  # global: split across replicas
    epochs: int = 30
    max_steps: int = 0  # 0: no limit
    max_minutes: float = 0.0  # 0: no limit; counts time across resumed runs
    learning_rate: float = 1e-3  # the peak rate, after any warm-up
    lr_schedule: str = "constant"  # constant | cosine (decays to the nearest budget limit)
    warmup_steps: int = 0  # linear ramp from ~0 to learning_rate
    final_lr_fraction: float = 0.05  # cosine: the last rate, as a fraction of learning_rate
    beta_1: float = 0.9
    beta_2: float = 0.999
    clip_norm: float = 5.0
    # validate and export an exponential moving average of the weights (0: the raw weights)
    ema_decay: float = 0.0
    checkpoint_every: int = 200
    patience: int = 4  # epochs without validation improvement before stopping
    val_bleu_samples: int = 256  # greedy-decoded validation rows per epoch (0: select by loss)
    max_len: int = 152
    seed: int = 0
    mixed_precision: str = "auto"  # auto (on with GPUs) | on | off


def settings_from(raw: dict[str, Any]) -> TrainSettings:
    settings = cli.dataclass_settings(TrainSettings, raw, "train")
    if settings.batch_size < 1 or settings.epochs < 1 or settings.checkpoint_every < 1:
        raise SystemExit("train: batch_size, epochs and checkpoint_every must be positive")
    if settings.mixed_precision not in {"auto", "on", "off"}:
        raise SystemExit("train: mixed_precision must be auto, on or off")
    if not 0 <= settings.ema_decay < 1:
        raise SystemExit(f"train: ema_decay must be in [0, 1), got {settings.ema_decay}")
    try:
        schedule_of(settings)
    except ValueError as error:
        raise SystemExit(f"train: {error}") from None
    return settings


def schedule_of(settings: TrainSettings) -> Schedule:
    return Schedule(
        peak=settings.learning_rate,
        kind=settings.lr_schedule,
        warmup_steps=settings.warmup_steps,
        final_fraction=settings.final_lr_fraction,
    )


def run_key(model_section: dict, settings: TrainSettings, data_digest: str) -> str:
    """Checkpoints are only resumed by a run with the same model, settings and data."""
    blob = json.dumps([model_section, asdict(settings), data_digest], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def data_digest(shards_dir: Path, vocab_path: Path) -> str:
    manifest = (shards_dir / "manifest.json").read_bytes()
    return hashlib.sha256(manifest + Path(vocab_path).read_bytes()).hexdigest()


@dataclass
class Progress:
    """Run state that must survive a restart; mirrored into tf.Variables for checkpointing."""

    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    seconds: float = 0.0
    best: float = -math.inf
    bad_epochs: int = 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline train", description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--shards", type=Path, required=True)
    parser.add_argument("--vocab", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="exported best model")
    parser.add_argument("--checkpoints", type=Path, required=True)
    parser.add_argument("--live", type=Path, required=True, help="dvclive folder")
    parser.add_argument("--model-settings", help="the model section as JSON")
    parser.add_argument("--train-settings", help="the train section as JSON")
    parser.add_argument(
        "--preprocessing",
        default="{}",
        help="render/crop settings the model was trained with (JSON)",
    )
    args = parser.parse_args(argv)
    cli.setup_logging()
    model_section = cli.read_section(args.model_settings, args.params, "model")
    settings = settings_from(cli.read_section(args.train_settings, args.params, "train"))
    from pipeline.trainer import Trainer  # TensorFlow loads only when training

    preprocessing = json.loads(args.preprocessing)
    trainer = Trainer(model_section, settings, args.shards, args.vocab, preprocessing)
    trainer.run(args.out, args.checkpoints, args.live)
    return 0
