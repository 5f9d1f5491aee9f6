"""dvc.yaml and the Snakefile describe one pipeline: same stages, outputs and params."""

from __future__ import annotations

import re
import shlex
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, run

RULE_BLOCK = re.compile(r"^rule (\w+):\n(.*?)(?=^rule |\Z)", re.MULTILINE | re.DOTALL)


@pytest.fixture(scope="module")
def dvc_stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


@pytest.fixture(scope="module")
def rule_outputs() -> dict[str, set[str]]:
    """Every file the full Snakemake DAG would write, by rule (from `snakemake --summary`)."""
    summary = run(["snakemake", "--summary", "--forceall"], ROOT).stdout.splitlines()
    outputs: dict[str, set[str]] = defaultdict(set)
    for line in summary[1:]:
        fields = line.split("\t")
        if len(fields) > 2:
            outputs[fields[2]].add(fields[0])
    return outputs


def allowed_rules(cmd: str) -> tuple[list[str], str]:
    """The rules a DVC stage lets Snakemake run, and its target."""
    words = shlex.split(cmd)
    assert words[0] == "snakemake", cmd
    start = words.index("--allowed-rules") + 1
    end = words.index("--")
    return words[start:end], words[end + 1]


def rule_config_sections() -> dict[str, set[str]]:
    """params.yaml keys each rule reads: settings("x"), config["x"]["y"], or the chunk list."""
    used: dict[str, set[str]] = {}
    for path in (ROOT / "workflow" / "rules").glob("*.smk"):
        for name, body in RULE_BLOCK.findall(path.read_text()):
            keys = set(re.findall(r'settings\("(\w+)"\)', body))
            keys |= {
                ".".join(filter(None, m))
                for m in re.findall(r'config\["(\w+)"\](?:\["(\w+)"\])?', body)
            }
            if "CHUNKS" in body:
                keys.add("render.chunks")
            used[name] = keys
    return used


def test_every_snakemake_rule_belongs_to_exactly_one_dvc_stage(dvc_stages):
    listed = set(run(["snakemake", "--list-rules"], ROOT).stdout.split()) - {"all"}
    owners = defaultdict(list)
    for stage, spec in dvc_stages.items():
        rules, target = allowed_rules(spec["cmd"])
        assert target == stage, f"stage {stage} runs target {target}"
        assert stage in rules
        for rule in rules:
            owners[rule].append(stage)
    assert set(owners) == listed
    assert all(len(stages) == 1 for stages in owners.values()), owners


def test_dvc_outs_are_exactly_the_rules_outputs(dvc_stages, rule_outputs):
    for stage, spec in dvc_stages.items():
        rules, _ = allowed_rules(spec["cmd"])
        produced = set().union(*(rule_outputs.get(r, set()) for r in rules))
        declared = [
            next(iter(o)) if isinstance(o, dict) else o
            for o in spec.get("outs", []) + spec.get("metrics", []) + spec.get("plots", [])
        ]
        for path in produced:
            assert any(_nested(path, d) for d in declared), (stage, path)
        for path in declared:
            assert any(_nested(p, path) for p in produced), (stage, path)


def _nested(a: str, b: str) -> bool:
    """One path is the other or lies inside it (a directory output holds declared files)."""
    return Path(a).is_relative_to(b) or Path(b).is_relative_to(a)


def test_dvc_params_are_exactly_what_the_rules_read(dvc_stages):
    used = rule_config_sections()
    for stage, spec in dvc_stages.items():
        rules, _ = allowed_rules(spec["cmd"])
        reads = set().union(*(used[r] for r in rules))
        reads = {k for k in reads if "." not in k or k.split(".")[0] not in reads}
        assert set(spec.get("params", [])) == reads, stage


def test_each_stage_depends_on_its_module_and_upstream_outputs(dvc_stages):
    outs = {
        next(iter(o)) if isinstance(o, dict) else o
        for spec in dvc_stages.values()
        for kind in ("outs", "metrics", "plots")
        for o in spec.get(kind, [])
    }
    for stage, spec in dvc_stages.items():
        deps = spec["deps"]
        assert f"pipeline/{stage}.py" in deps
        for dep in deps:
            assert dep.startswith(("pipeline/", "${")) or dep in outs, (stage, dep)


def test_snakemake_lint_is_clean():
    result = run(["snakemake", "--lint"], ROOT)
    assert "Lints for" not in result.stdout + result.stderr
