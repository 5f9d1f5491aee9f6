"""What every command shares: how it is given its settings, and how it logs its progress.

Snakemake passes the sections (or single keys) a stage reads as JSON (``--settings``); a person
at a shell points at a params file (``--params``, default ``params.yaml``). Both are read by
``pipeline.config``, so a stage run by hand does exactly what its rule does, and a stage given
JSON that lacks something it reads stops rather than falling back to a default.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
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
