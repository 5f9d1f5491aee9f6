"""The project's import graph, read from the source: every import of the project's own modules,
those inside functions included (importing a module runs only its top level, so that would
miss them). The deps contract and the layout tests are built on it."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = "pipeline"


@dataclass(frozen=True)
class Import:
    module: str  # the imported module, resolved to a file of the project or a third-party name
    nested: bool  # inside a function or class body, not at the module's top level


def module_file(module: str) -> Path | None:
    """The project file a dotted module name refers to, or None for a name that is not one."""
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> list[str]:
    return sorted(module_name(p) for p in (ROOT / PACKAGE).rglob("*.py"))


@cache
def imports_of(module: str) -> tuple[Import, ...]:
    """What ``module`` imports: project modules by their resolved names (``from pipeline.model
    import bundle`` is ``pipeline.model.bundle``), other packages by their top-level name."""
    path = module_file(module)
    assert path is not None, module
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    found: list[Import] = []
    for node in ast.walk(tree):
        nested = id(node) not in top_level
        if isinstance(node, ast.Import):
            found += [Import(_resolve(alias.name), nested) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if node.module.split(".")[0] != PACKAGE:
                found.append(Import(node.module.split(".")[0], nested))
                continue
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                found.append(Import(name if module_file(name) else node.module, nested))
    return tuple(dict.fromkeys(found))


def _resolve(name: str) -> str:
    return name if name.split(".")[0] == PACKAGE else name.split(".")[0]


def project_imports(module: str) -> set[str]:
    return {i.module for i in imports_of(module) if i.module.split(".")[0] == PACKAGE}


def closure(module: str) -> set[str]:
    """The module, every project module it imports directly or not, and their packages."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        parts = current.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += project_imports(current)
    return seen
