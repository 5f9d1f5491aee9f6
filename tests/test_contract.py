"""dvc.yaml, the Snakefile and the code describe one pipeline: same stages, outputs, params, and
deps that cover every line of code a stage runs."""

from __future__ import annotations

import ast
import re
import shlex
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from pipeline.__main__ import COMMANDS
from tests.conftest import ROOT, run
from tests.imports import closure, module_file

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


def rule_files() -> dict[str, Path]:
    """The rules file that defines each rule."""
    return {
        name: path
        for path in (ROOT / "workflow" / "rules").glob("*.smk")
        for name, _ in RULE_BLOCK.findall(path.read_text())
    }


def settings_keys(body: str) -> set[str]:
    """The params a rule passes its command: the arguments of its settings(...) calls."""
    calls = re.findall(r"settings\(([^)]*)\)", body)
    return {key for call in calls for key in re.findall(r'"([\w.]+)"', call)}


def rule_config_sections() -> dict[str, set[str]]:
    """params.yaml keys each rule reads: settings(...), config["x"]["y"], or the chunk list."""
    used: dict[str, set[str]] = {}
    for path in (ROOT / "workflow" / "rules").glob("*.smk"):
        for name, body in RULE_BLOCK.findall(path.read_text()):
            keys = settings_keys(body)
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


def code_deps(stage: str, rules: list[str]) -> set[str]:
    """What a stage's command runs: ``python -m pipeline`` and every project module the stage's
    module imports, as subpackage folders and top-level files, plus the rule files."""
    files = {module_file(m) for m in closure(COMMANDS[stage]) | closure("pipeline.__main__")}
    deps = {
        str(f.relative_to(ROOT).parent if f.parent != ROOT / "pipeline" else f.relative_to(ROOT))
        for f in files
    }
    where = rule_files()
    deps |= {str(where[r].relative_to(ROOT)) for r in rules} | {"workflow/rules/common.smk"}
    return deps


def test_each_stage_depends_on_exactly_the_code_it_runs(dvc_stages):
    for stage, spec in dvc_stages.items():
        rules, _ = allowed_rules(spec["cmd"])
        listed = {d.rstrip("/") for d in spec["deps"] if d.startswith(("pipeline", "workflow"))}
        assert listed == code_deps(stage, rules), stage


def test_each_stage_depends_on_upstream_outputs_only_otherwise(dvc_stages):
    outs = {
        next(iter(o)) if isinstance(o, dict) else o
        for spec in dvc_stages.values()
        for kind in ("outs", "metrics", "plots")
        for o in spec.get(kind, [])
    }
    for stage, spec in dvc_stages.items():
        for dep in spec["deps"]:
            assert dep.startswith(("pipeline", "workflow", "${")) or dep in outs, (stage, dep)


def stage_reads(stage: str) -> set[str]:
    """The READS tuple of a stage's module (read from its source: no TensorFlow to import)."""
    tree = ast.parse(module_file(COMMANDS[stage]).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "READS":
            return set(ast.literal_eval(node.value))
    raise AssertionError(f"{COMMANDS[stage]} declares no READS")


def test_each_stage_reads_what_its_rule_passes_and_dvc_tracks(dvc_stages):
    """The module's READS, its rule's settings(...) and dvc.yaml's params name the same keys,
    so a stage run by hand (--params) reads what its rule passes (--settings)."""
    bodies = {
        name: body
        for path in (ROOT / "workflow" / "rules").glob("*.smk")
        for name, body in RULE_BLOCK.findall(path.read_text())
    }
    for stage, spec in dvc_stages.items():
        rules, _ = allowed_rules(spec["cmd"])
        [runner] = [r for r in rules if f"python -m pipeline {stage} " in bodies[r]]
        assert stage_reads(stage) == settings_keys(bodies[runner]), stage
        assert stage_reads(stage) <= set(spec["params"]), stage


def test_snakemake_lint_is_clean():
    result = run(["snakemake", "--lint"], ROOT)
    assert "Lints for" not in result.stdout + result.stderr


def _train_shell(*extra: str) -> str:
    result = run(["snakemake", "-n", "-p", "--nolock", "--forceall", "train", *extra], ROOT)
    [command] = [line for line in result.stdout.splitlines() if "pipeline train" in line]
    return command


def test_train_starts_once_per_slurm_task_only_when_the_profile_asks():
    """``tasks`` and ``mpi`` (as in workflow/profiles/slurm) start one worker per task."""
    assert re.search(r"^(Shell command: )?python -m pipeline train ", _train_shell())
    many = _train_shell("--set-resources", "train:tasks=4", "train:mpi=srun")
    assert re.search(r"^(Shell command: )?srun --ntasks 4 python -m pipeline train ", many)
