"""``python -m pipeline recipe FILE``: a recipe's settings as ``dvc exp run -S`` flags.

A recipe (e.g. ``recipes/singh2018.yaml``) is a params mapping laid over ``params.yaml``: the
whole of a published configuration, data and training included, as one file instead of a long
command line. The overlay is checked against the schema first, so a misspelt key stops here,
named, rather than in the middle of an experiment.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Any

import yaml

from pipeline import config


def overlay(base: dict[str, Any], recipe: dict[str, Any]) -> dict[str, Any]:
    """``base`` with each of the recipe's sections updated key by key."""
    merged = {name: dict(body) for name, body in base.items()}
    for name, body in recipe.items():
        if not isinstance(body, dict):
            raise config.ConfigError(f"recipe: section '{name}' must be a mapping")
        merged.setdefault(name, {}).update(body)
    return merged


def flags(recipe: dict[str, Any]) -> list[str]:
    """``-S``, ``section.key=value`` for every key, values as JSON (which DVC reads as YAML)."""
    return [
        word
        for name, body in recipe.items()
        for key, value in body.items()
        for word in ("-S", f"{name}.{key}={json.dumps(value)}")
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline recipe", description=__doc__)
    parser.add_argument("recipe", type=Path, help="a params mapping, e.g. recipes/singh2018.yaml")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    recipe = yaml.safe_load(args.recipe.read_text()) or {}
    base = yaml.safe_load(args.params.read_text()) or {}
    config.parse(overlay(base, recipe), f"{args.params} + {args.recipe}")
    print(shlex.join(flags(recipe)))
    return 0
