"""Train stage: Parquet shards -> the best model by validation score, exported for evaluation.

The same code runs on a laptop's CPU and on several GPUs (``pipeline.model.devices``). Training
can be killed at any moment (``kill -9``) and started again with the same command: checkpoints
every ``checkpoint_every`` steps hold the model, the optimizer and the position in the epoch,
in a folder named by a hash of everything that shapes the run, so a changed setting never
resumes a stale one. The model records the render and crop settings of its training images,
read from the params like every other setting.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline import cli
from pipeline.config import ConfigError
from pipeline.model import networks
from pipeline.model.trainer import Trainer, preprocessing_of

# the params this stage reads (dvc.yaml lists the same): the model records render.dpi, .font, crop
READS = ("model", "train", "augment", "render.dpi", "render.font", "crop")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline train", description=__doc__)
    cli.add_params_args(parser)
    parser.add_argument("--shards", type=Path, required=True)
    parser.add_argument("--vocab", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="exported best model")
    parser.add_argument("--checkpoints", type=Path, required=True)
    parser.add_argument("--live", type=Path, required=True, help="dvclive folder")
    cli.add_verbose_arg(parser)
    args = parser.parse_args(argv)
    cli.setup_logging()
    params = cli.read_params(args, READS)
    try:
        networks.model_config(params.model)
    except ValueError as error:
        raise ConfigError(f"params: model: {error}") from None
    trainer = Trainer(
        params.model,
        params.train,
        args.shards,
        args.vocab,
        preprocessing_of(params),
        params.augment,
    )
    trainer.run(args.out, args.checkpoints, args.live)
    return 0
