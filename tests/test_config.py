"""One strict schema for params.yaml: every section refuses misspelt keys, wrong types and
out-of-range values by name, its defaults are the shipped file, and a stage run by hand reads
what its Snakemake rule passes."""

from __future__ import annotations

import argparse
import json
import re
import shlex
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from pipeline import cli, config
from pipeline.__main__ import main as pipeline_main
from pipeline.config import ConfigError, Params
from tests.conftest import ROOT, run

SECTIONS = [f.name for f in fields(Params)]

# per section: a value of the wrong type, and a value out of range, each with its message
BAD_VALUES = {
    "generate": ({"count": "many"}, "must be an integer", {"count": 0}, "must be at least 1"),
    "step0": (
        {"split": {"train": "most"}},
        "step0.split.train = 'most': must be a number",
        {"split": {"train": 0.8, "validation": 0.1, "test": 0.2}},
        "step0.split.train+validation+test = 1.1",
    ),
    "render": ({"dpi": [200]}, "must be an integer", {"dpi": -200}, "render.dpi = -200"),
    "crop": (
        {"buckets": [[32, "wide"]]},
        "must be an integer",
        {"buckets": [[0, 10]]},
        "sizes must be positive",
    ),
    "vocab": ({"min_count": 1.5}, "must be an integer", {"min_count": 0}, "must be at least 1"),
    "shards": ({"max_tokens": None}, "must be an integer", {"rows_per_shard": 0}, "at least 1"),
    "model": (
        {"timing_signal": "yes"},
        "model.timing_signal = 'yes': must be true or false",
        {"variant": "vit"},
        "model.variant = 'vit': must be one of",
    ),
    "train": (
        {"ema_decay": "high"},
        "must be a number",
        {"lr_schedule": "sometimes"},
        "train.lr_schedule = 'sometimes': must be one of",
    ),
    "augment": (
        {"p_blur": "often"},
        "augment.p_blur = 'often': must be a number",
        {"p_noise": 1.5},
        "augment.p_noise = 1.5: must be a probability in [0, 1]",
    ),
    "evaluate": ({"visual": 1}, "must be true or false", {"beam_width": 0}, "at least 1"),
}


def shipped() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_params_yaml_lists_every_key_of_the_schema():
    """A complete file: `dvc exp run -S section.key=value` works for every key, without `+`."""
    assert list(shipped()) == SECTIONS and set(BAD_VALUES) == set(SECTIONS)
    for section in SECTIONS:
        keys = [f.name for f in fields(getattr(Params(), section))]
        assert list(shipped()[section]) == keys, section


def test_the_schema_defaults_are_the_shipped_params():
    """One set of defaults: the dataclasses' and params.yaml's cannot disagree."""
    assert config.load(ROOT / "params.yaml") == Params()


@pytest.mark.parametrize("section", SECTIONS)
def test_a_misspelt_key_is_named_with_the_allowed_keys(section):
    first = fields(getattr(Params(), section))[0].name
    misspelt = first[:-1] + first[-1] * 2
    with pytest.raises(ConfigError) as error:
        config.parse(shipped() | {section: shipped()[section] | {misspelt: 1}}, "params.yaml")
    message = str(error.value)
    assert f"params.yaml: {section}: unknown key '{misspelt}'" in message
    assert f"allowed keys: {first}" in message


@pytest.mark.parametrize("section", SECTIONS)
def test_a_wrong_type_and_an_out_of_range_value_are_named(section):
    wrong, wrong_message, out_of_range, range_message = BAD_VALUES[section]
    for values, message in ((wrong, wrong_message), (out_of_range, range_message)):
        with pytest.raises(ConfigError, match=re.escape(message)):
            config.parse({section: shipped()[section] | values})


def test_an_unknown_section_and_a_section_that_is_not_a_mapping_are_refused():
    with pytest.raises(ConfigError, match="unknown key 'trian'; allowed keys: generate, step0"):
        config.parse({"trian": {}})
    with pytest.raises(ConfigError, match="params: crop must be a mapping, got 4"):
        config.parse({"crop": 4})


def test_yaml_number_forms_read_as_numbers():
    # PyYAML reads 5e-5 (no dot) as a string; integers stand for floats
    settings = config.section("train", {"learning_rate": "5e-5", "clip_norm": 5})
    assert settings.learning_rate == pytest.approx(5e-5) and settings.clip_norm == 5.0
    assert config.section("model", {"l2": "5e-5"}).l2 == pytest.approx(5e-5)


def test_the_first_stage_that_reads_a_misspelt_key_stops(tmp_path):
    params = shipped()
    params["crop"]["pading"] = params["crop"].pop("pad")
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    args = ["crop", "--params", str(path), "--rendered", "r.parquet", "--out", "o.parquet"]
    with pytest.raises(ConfigError, match="crop: unknown key 'pading'; allowed keys: pad,"):
        pipeline_main(args)
    assert not (tmp_path / "o.parquet").exists()


def test_settings_json_that_lacks_what_the_stage_reads_is_refused():
    parser = argparse.ArgumentParser()
    cli.add_params_args(parser)
    args = parser.parse_args(["--settings", json.dumps({"model": {}, "train": {}})])
    with pytest.raises(ConfigError, match="--settings lacks render.dpi, crop"):
        cli.read_params(args, ("model", "train", "render.dpi", "crop"))


def rule_settings(stage: str) -> str:
    """The --settings JSON the Snakemake rule passes the stage, from a dry run's commands."""
    out = run(["snakemake", "-n", "-p", "--forceall", "evaluate"], ROOT).stdout
    command = next(
        line for line in out.splitlines() if f"python -m pipeline {stage} --settings" in line
    )
    words = shlex.split(command.split(": ", 1)[1])
    return words[words.index("--settings") + 1]


def test_a_stage_run_by_hand_reads_what_its_rule_passes():
    """train --params params.yaml and the train rule's --settings give the same settings, and
    the preprocessing the model records (render.dpi, crop) comes from the params either way."""
    by_rule = config.parse(config.json_mapping(rule_settings("train")))
    by_hand = config.load(Path(ROOT / "params.yaml"))
    for name in ("model", "train", "augment", "crop"):
        assert getattr(by_rule, name) == getattr(by_hand, name)
    assert by_rule.render.dpi == by_hand.render.dpi
    assert by_rule.render.font == by_hand.render.font
