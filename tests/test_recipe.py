"""Recipes: a published configuration as one params overlay, checked against the schema."""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest
import yaml

from pipeline import config, recipe
from tests.conftest import ROOT


def test_singh_2018_recipe_lays_over_params_as_valid_settings():
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    overlay = yaml.safe_load((ROOT / "recipes" / "singh2018.yaml").read_text())
    params = config.parse(recipe.overlay(base, overlay))
    assert (params.model.preset, params.model.timing_signal) == ("paper", None)
    assert (params.train.learning_rate, params.train.beta_1, params.train.clip_norm) == (
        1e-4,
        0.5,
        0,
    )
    assert params.crop.buckets == ((126, 1086),) and params.render.dpi == 200
    assert params.evaluate.beam_width == 10
    assert params.shards.drop_unknown and "\\rule" in params.shards.drop_tokens


def test_the_command_prints_dvc_flags_that_read_back_as_the_recipe():
    out = subprocess.run(
        [sys.executable, "-m", "pipeline", "recipe", "recipes/singh2018.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    words = shlex.split(out)
    assert words[0::2] == ["-S"] * (len(words) // 2)
    pairs = dict(word.split("=", 1) for word in words[1::2])
    assert yaml.safe_load(pairs["crop.buckets"]) == [[126, 1086]]
    assert yaml.safe_load(pairs["model.timing_signal"]) is None


def test_a_misspelt_recipe_key_is_named():
    with pytest.raises(config.ConfigError, match="unknown key 'learnig_rate'"):
        config.parse(recipe.overlay({"train": {}}, {"train": {"learnig_rate": 1}}))
