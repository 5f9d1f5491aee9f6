"""The package layout shows the architecture, and the imports keep to it.

Halves, in pipeline order: the shared top-level files, corpus (data, no TensorFlow), model
(TensorFlow), evaluation. A module imports only its own half and the halves before it, imports a
stage's command module only from an earlier half, declares every import at its top, and no
import circle exists.
"""

from __future__ import annotations

import subprocess
import sys

from pipeline.__main__ import COMMANDS
from tests.conftest import ROOT, tool_env
from tests.imports import closure, imports_of, project_imports, project_modules

SHARED = {"cli", "config", "contracts", "metrics", "provenance", "recipe"}
HALVES = ("corpus", "model", "evaluation")


def half(module: str) -> int:
    """0 for the shared top-level files, then 1, 2, 3 for corpus, model and evaluation."""
    parts = module.split(".")
    return HALVES.index(parts[1]) + 1 if len(parts) > 2 and parts[1] in HALVES else 0


def test_ls_pipeline_shows_the_halves():
    entries = {p.name for p in (ROOT / "pipeline").iterdir() if p.name != "__pycache__"}
    top_files = {n.removesuffix(".py") for n in entries if n.endswith(".py")}
    assert entries - {f"{n}.py" for n in top_files} == set(HALVES)
    assert top_files == SHARED | {"__init__", "__main__"}


def test_modules_import_only_their_own_half_and_earlier_ones():
    for module in project_modules():
        if module == "pipeline.__main__":
            continue  # the dispatcher names every command
        for imported in project_imports(module):
            assert half(imported) <= half(module), f"{module} imports {imported}"


def test_no_module_imports_a_command_of_its_own_half_or_a_later_one():
    commands = set(COMMANDS.values())
    for module in project_modules():
        for imported in project_imports(module) & commands:
            assert half(imported) < half(module), f"{module} imports the command {imported}"


def test_there_is_no_import_circle():
    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " -> ".join((*path, module))
        for imported in project_imports(module):
            visit(imported, (*path, module))

    for module in project_modules():
        visit(module, ())


def test_every_import_is_at_the_top_of_its_module():
    """A lazy import hides what a module depends on (and from the deps contract's readers)."""
    for module in project_modules():
        nested = [i.module for i in imports_of(module) if i.nested]
        assert not nested, f"{module} imports {nested} inside a function"


def test_the_data_half_never_imports_tensorflow():
    for module in project_modules():
        if half(module) in (0, 1):
            for reached in closure(module):
                assert "tensorflow" not in {i.module for i in imports_of(reached)}, (
                    f"{module} reaches TensorFlow through {reached}"
                )
    names = [m for m in project_modules() if half(m) in (0, 1)]
    probe = f"import sys, {', '.join(names)}; print('tensorflow' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=tool_env(), capture_output=True, text=True
    )
    assert result.stdout.strip() == "False", result.stderr[-2000:]
