"""The arguments every command that uses a trained model shares: predict, export and serve.

The model folder and the decoding settings (beam width, length penalty, max length) are declared,
defaulted and checked here once, so the three commands answer alike unless told otherwise, and a
model that cannot be loaded is a usage error naming the folder, never a traceback.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.model import bundle
from pipeline.model.decode import DecodeSettings

MODEL_DIR = Path("models/best")  # the train stage's export (dvc.yaml)
BEAM_WIDTH = 5


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--beam-width``, ``--length-penalty`` and ``--max-len``."""
    parser.add_argument(
        "--model",
        type=Path,
        default=MODEL_DIR,
        metavar="DIR",
        help="trained model folder (default: %(default)s)",
    )
    parser.add_argument(
        "--beam-width",
        type=int,
        default=BEAM_WIDTH,
        metavar="N",
        help="beams; 1 = greedy (default: %(default)s)",
    )
    parser.add_argument(
        "--length-penalty",
        type=float,
        default=DecodeSettings.length_penalty,
        metavar="A",
        help="beam length penalty (default: %(default)s)",
    )
    parser.add_argument("--max-len", type=int, metavar="N", help="default: the model's max_len")


def check_model_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What can be checked before the model is loaded."""
    for name in ("beam_width", "max_len"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if args.length_penalty < 0:
        parser.error(f"--length-penalty must be >= 0, got {args.length_penalty}")


def load_model(parser: argparse.ArgumentParser, args: argparse.Namespace) -> bundle.Bundle:
    """The model in ``--model``, and a beam no wider than its vocabulary; else a usage error."""
    try:
        exported = bundle.load(args.model)
    except bundle.BundleError as error:
        parser.error(str(error))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        parser.error(f"cannot load the model in {args.model}: {exc}")
    if args.beam_width > len(exported.vocab):
        parser.error(
            f"--beam-width {args.beam_width} exceeds the vocabulary size {len(exported.vocab)}"
        )
    return exported


def decode_settings(
    args: argparse.Namespace, exported: bundle.Bundle, batch_size: int = DecodeSettings.batch_size
) -> DecodeSettings:
    return DecodeSettings(
        max_len=args.max_len or exported.max_len,
        beam_width=args.beam_width,
        length_penalty=args.length_penalty,
        batch_size=batch_size,
    )
