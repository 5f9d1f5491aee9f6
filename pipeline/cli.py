"""Shared command-line plumbing so every stage reads its settings the same way.

Snakemake passes a stage's ``params.yaml`` section as JSON (``--settings``); a person at a shell
can instead point at a params file (``--params params.yaml``). Either way the stage function
receives a plain dict and never touches the file system to find its configuration.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

import yaml


def add_settings_args(parser: argparse.ArgumentParser) -> None:
    """Add the two mutually exclusive ways of passing a stage's settings."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--settings", help="the stage's params section as JSON")
    group.add_argument("--params", type=Path, help="a params.yaml to read the section from")


def load_settings(args: argparse.Namespace, section: str) -> dict[str, Any]:
    """Return the stage's settings from --settings JSON or the named section of --params."""
    return read_section(args.settings, args.params, section)


def read_section(settings_json: str | None, params: Path | None, section: str) -> dict[str, Any]:
    """A section as JSON when given, else from the params file (default ``params.yaml``)."""
    if settings_json is not None:
        value = json.loads(settings_json)
    else:
        path = params or Path("params.yaml")
        with open(path) as handle:
            value = (yaml.safe_load(handle) or {}).get(section)
        if value is None:
            raise SystemExit(f"{path}: no '{section}' section")
    if not isinstance(value, dict):
        raise SystemExit(f"settings for '{section}' must be a mapping, got {type(value).__name__}")
    return value


T = TypeVar("T")


def dataclass_settings(cls: type[T], raw: dict[str, Any], stage: str) -> T:
    """A settings dataclass from a params section: a misspelt key is an error, not a silent
    default, and each value takes its field's default type (YAML may give 1 for 1.0)."""
    defaults = cls()
    known = sorted(f.name for f in fields(defaults))
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise SystemExit(f"{stage}: unknown settings {unknown}; known: {known}")
    return cls(**{k: type(getattr(defaults, k))(v) for k, v in raw.items()})


def setup_logging() -> logging.Logger:
    """Log to stderr with the stage name, so Snakemake's per-job logs read on their own."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr
    )
    return logging.getLogger("pipeline")
