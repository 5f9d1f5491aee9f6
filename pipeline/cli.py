"""What every command shares: how it is given its settings, and how it logs its progress.

Snakemake passes the sections (or single keys) a stage reads as JSON (``--settings``); a person
at a shell points at a params file (``--params``, default ``params.yaml``). Both are read by
``pipeline.config``, so a stage run by hand does exactly what its rule does, and a stage given
JSON that lacks something it reads stops rather than falling back to a default.

TensorFlow talks a lot on stderr: C++ start-up lines (oneDNN's notice, absl's warning, CPU
features), C++ log lines while running, and Python logging from absl and tf. A person running
``predict`` wants its answer and the pipeline's own counts; ``quiet_tensorflow`` keeps the rest
out of the way unless ``--verbose`` (or ``PIPELINE_VERBOSE=1``, e.g. under Snakemake) asks.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pipeline import config


def add_params_args(parser: argparse.ArgumentParser) -> None:
    """The two mutually exclusive ways of passing settings."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--settings", help="the params sections this stage reads, as JSON")
    group.add_argument(
        "--params", type=Path, default=Path("params.yaml"), help="params file (%(default)s)"
    )


def read_params(args: argparse.Namespace, reads: tuple[str, ...]) -> config.Params:
    """The stage's settings; ``reads`` lists the sections or ``section.key``s it uses."""
    if args.settings is None:
        return config.load(args.params)
    raw = config.json_mapping(args.settings)
    params = config.parse(raw, "--settings")  # checks the sections, so each is a mapping
    given = set(raw) | {f"{name}.{key}" for name, body in raw.items() for key in body}
    missing = [name for name in reads if name not in given]
    if missing:
        raise config.ConfigError(f"--settings lacks {', '.join(missing)}, which this stage reads")
    return params


VERBOSE_FLAG = "--verbose"
VERBOSE_ENV = "PIPELINE_VERBOSE"
# What TensorFlow writes to fd 2 while it is imported, before absl's logging honours
# TF_CPP_MIN_LOG_LEVEL: absl's notice, C++ log lines ("I0000 00:00:... port.cc:153] oneDNN
# custom operations are on...") and the CPU-features line's second line.
STARTUP_NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IWE]\d{4} [\d:.]+ +\d+ \S+:\d+\] "
    r"|To enable the following instructions: "
)
TENSORFLOW_MODULES = r"(tensorflow|keras|absl|tf_keras|google\.protobuf)(\.|$)"


def add_verbose_arg(parser: argparse.ArgumentParser) -> None:
    """``--verbose`` on a TensorFlow command; ``python -m pipeline`` reads it before the
    command's module (and so TensorFlow) is imported, see ``quiet_tensorflow``."""
    parser.add_argument(
        VERBOSE_FLAG,
        action="store_true",
        help=f"show TensorFlow's own start-up and log lines (or set {VERBOSE_ENV}=1)",
    )


def verbose_wanted(argv: Sequence[str]) -> bool:
    """The flag among a command's arguments, or the environment variable set (not 0)."""
    setting = os.environ.get(VERBOSE_ENV, "").strip().lower()
    return VERBOSE_FLAG in argv or setting not in ("", "0", "false", "no", "off")


@contextmanager
def quiet_tensorflow(verbose: bool) -> Iterator[None]:
    """Import a command inside this to keep TensorFlow's noise out of its stderr.

    Unless ``verbose``: C++ log lines below FATAL are off (``TF_CPP_MIN_LOG_LEVEL=3``, unless
    the caller set a level), which covers everything TensorFlow logs once absl has started,
    including the harmless "E" lines its data pipeline prints; absl's and tf's Python loggers
    keep errors only, and TensorFlow's and Keras's Python warnings are ignored, for the rest
    of the process. What TensorFlow writes before absl starts (while it is imported) ignores
    the level, so it is caught from fd 2 (``without_startup_lines``). Numerics are untouched:
    oneDNN stays on, only its notice goes. The pipeline's own log lines are not affected.
    """
    if verbose:
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for name in ("absl", "tensorflow"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=TENSORFLOW_MODULES)
    with without_startup_lines():
        yield


@contextmanager
def without_startup_lines() -> Iterator[None]:
    """Catch what is written to fd 2 (by C++ too) meanwhile, then write it back without
    TensorFlow's start-up lines: an import error, or anything else, still shows."""
    with tempfile.TemporaryFile() as caught:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            text = caught.read().decode("utf-8", "replace")
            kept = [line for line in text.splitlines(True) if not STARTUP_NOISE.match(line)]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


def setup_logging() -> logging.Logger:
    """Log to stderr with the stage name, so Snakemake's per-job logs read on their own."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr
    )
    return logging.getLogger("pipeline")


class ProgressLog:
    """A log line at most every ``every_s`` seconds: how far, how fast, and the time left.

    Under Snakemake a stage's output goes to a log file, where a progress bar shows nothing
    useful; a line every half minute tells a person watching ``logs/`` that work goes on.
    """

    def __init__(
        self, label: str, total: int, unit: str, every_s: float = 30.0, done: int = 0
    ) -> None:
        self.label, self.total, self.unit, self.every_s = label, total, unit, every_s
        self.done = done
        self.log = logging.getLogger("pipeline")
        self.since, self.since_done, self.samples = time.monotonic(), done, 0

    def advance(self, count: int = 1, *, samples: int = 0, detail: str = "") -> None:
        """``count`` more units done (``samples`` items in them, for a rate); ``detail`` is
        added to the line, e.g. the latest loss."""
        self.done += count
        self.samples += samples
        now = time.monotonic()
        if now - self.since < self.every_s:
            return
        rate = (self.done - self.since_done) / (now - self.since)
        left = max(self.total - self.done, 0) / rate if rate > 0 else 0.0
        speed = f"{self.samples / (now - self.since):.1f} samples/s" if samples else ""
        speed = speed or f"{rate:.1f} {self.unit}/s"
        self.log.info(
            "%s: %d/%d %s, %s, about %s left%s",
            self.label,
            self.done,
            self.total,
            self.unit,
            speed,
            _duration(left),
            f"; {detail}" if detail else "",
        )
        self.since, self.since_done, self.samples = now, self.done, 0


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes}m {seconds:02d}s"
