"""Tests for the formula generator: reproducibility, the normalized token format, grammar
coverage, and that real LaTeX typesets what it produces."""

from __future__ import annotations

import json
import random
import re
import shutil
import statistics
import subprocess
from pathlib import Path

import pytest

from pipeline.corpus.generate import generate_formulas, main, write_formulas

PREAMBLE = (
    "\\documentclass[12pt]{article}\\usepackage{amsmath}\\usepackage{amssymb}"
    "\\pagestyle{empty}\n\\begin{document}\n"
)
ERROR_LINE = re.compile(r"^\./.*:\d+: ", re.MULTILINE)
SPACING = {r"\,", r"\;", r"\:", r"\!", r"\quad", r"\qquad"}


@pytest.fixture(scope="module")
def sample() -> list[str]:
    return generate_formulas(2000, seed=7)


# -- determinism -----------------------------------------------------------------------------


def test_same_seed_gives_same_formulas() -> None:
    assert generate_formulas(300, seed=5) == generate_formulas(300, seed=5)


def test_different_seeds_give_different_formulas() -> None:
    first, second = generate_formulas(300, seed=5), generate_formulas(300, seed=6)
    assert sum(a != b for a, b in zip(first, second, strict=True)) > 290


def test_shorter_run_is_a_prefix_of_longer_run() -> None:
    assert generate_formulas(1000, seed=3)[:137] == generate_formulas(137, seed=3)


def test_independent_of_global_random_state() -> None:
    random.seed(1)
    first = generate_formulas(50, seed=2)
    random.seed(999)
    second = generate_formulas(50, seed=2)
    assert first == second
    random.seed(0)
    expected = random.random()
    random.seed(0)
    generate_formulas(50, seed=2)
    assert random.random() == expected, "generator must not consume the global stream"


def test_zero_count_is_empty() -> None:
    assert generate_formulas(0, seed=0) == []


@pytest.mark.parametrize("kwargs", [{"count": -1}, {"count": 5, "max_tokens": 3}])
def test_invalid_arguments_raise(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        generate_formulas(seed=0, **kwargs)


# -- token format ----------------------------------------------------------------------------


def test_single_spaced_ascii_non_empty(sample: list[str]) -> None:
    for formula in sample:
        assert formula, "empty formula"
        assert formula.isascii(), formula
        assert formula == formula.strip(), formula
        assert "  " not in formula and "\t" not in formula and "\n" not in formula, formula


def test_max_tokens_respected(sample: list[str]) -> None:
    assert max(len(formula.split()) for formula in sample) <= 120
    short = generate_formulas(500, seed=11, max_tokens=25)
    assert max(len(formula.split()) for formula in short) <= 25


def test_groups_left_right_and_environments_nest(sample: list[str]) -> None:
    for formula in sample:
        assert _nesting_error(formula) is None, formula


def test_braces_are_their_own_tokens(sample: list[str]) -> None:
    allowed = re.compile(r"^(\{|\}|\\[{}]|\\left\\\{|\\right\\\}|\\(begin|end)\{[a-z]+\})$")
    for formula in sample:
        for token in formula.split():
            if "{" in token or "}" in token:
                assert allowed.match(token), (token, formula)


def test_scripts_are_always_braced(sample: list[str]) -> None:
    for formula in sample:
        tokens = formula.split()
        for index, token in enumerate(tokens):
            if token in {"_", "^"}:
                assert tokens[index + 1] == "{", formula


LEFT = re.compile(r"^\\left[^a-zA-Z]")
RIGHT = re.compile(r"^\\right[^a-zA-Z]")


def _nesting_error(formula: str) -> str | None:
    """Check ``{}``, ``\\left``/``\\right`` and ``\\begin``/``\\end`` nest as one stack, which is
    exactly TeX's rule that a ``\\left`` must close in the group that opened it."""
    stack: list[str] = []
    for token in formula.split():
        if token == "{" or LEFT.match(token) or token.startswith(r"\begin{"):
            stack.append(token)
        elif token == "}" or RIGHT.match(token) or token.startswith(r"\end{"):
            if not stack:
                return f"unopened {token}"
            opened = stack.pop()
            if not _closes(opened, token):
                return f"{opened} closed by {token}"
    return f"unclosed {stack}" if stack else None


def _closes(opened: str, token: str) -> bool:
    if opened == "{":
        return token == "}"
    if LEFT.match(opened):
        return bool(RIGHT.match(token))
    return token == r"\end" + opened[len(r"\begin") :]


@pytest.mark.parametrize(
    ("formula", "ok"),
    [
        ("{ x", False),
        ("x }", False),
        (r"{ \left( x } \right)", False),
        (r"\left( x \right.", True),
        (r"\begin{matrix} x \end{array}", False),
        (r"\left( \begin{array} { c } x \end{array} \right)", True),
        (r"\leftarrow x \rightarrow", True),
    ],
)
def test_nesting_check_itself(formula: str, ok: bool) -> None:
    assert (_nesting_error(formula) is None) is ok


# -- coverage and distribution --------------------------------------------------------------


def _has(tokens: list[str], *names: str) -> bool:
    return not set(names).isdisjoint(tokens)


def _has_seq(tokens: list[str], *seq: str) -> bool:
    width = len(seq)
    return any(tuple(tokens[i : i + width]) == seq for i in range(len(tokens) - width + 1))


FAMILIES = {
    "fraction": lambda t: _has(t, r"\frac"),
    "root": lambda t: _has_seq(t, r"\sqrt", "{"),
    "root with index": lambda t: _has_seq(t, r"\sqrt", "["),
    "sum with limits": lambda t: _has_seq(t, r"\sum", "_", "{"),
    "integral with limits": lambda t: _has_seq(t, r"\int", "_", "{"),
    "product": lambda t: _has(t, r"\prod"),
    "contour integral": lambda t: _has(t, r"\oint"),
    "limit": lambda t: _has_seq(t, r"\lim", "_", "{"),
    "left/right": lambda t: _has(t, r"\left(", r"\left[", r"\left\{", r"\left|"),
    "array with column spec": lambda t: _has_seq(t, r"\begin{array}", "{"),
    "pmatrix": lambda t: _has(t, r"\begin{pmatrix}"),
    "bmatrix": lambda t: _has(t, r"\begin{bmatrix}"),
    "vmatrix": lambda t: _has(t, r"\begin{vmatrix}"),
    "matrix": lambda t: _has(t, r"\begin{matrix}"),
    "cases": lambda t: _has(t, r"\begin{cases}"),
    "accent": lambda t: _has(t, r"\hat", r"\bar", r"\tilde", r"\vec", r"\dot", r"\ddot"),
    "wide accent": lambda t: _has(t, r"\overline", r"\underline", r"\widetilde", r"\widehat"),
    "greek lower": lambda t: _has(t, r"\alpha", r"\beta", r"\mu", r"\omega", r"\theta"),
    "greek upper": lambda t: _has(t, r"\Gamma", r"\Omega", r"\Phi", r"\Delta", r"\Sigma"),
    "mathrm": lambda t: _has(t, r"\mathrm"),
    "mathbf": lambda t: _has(t, r"\mathbf"),
    "mathcal": lambda t: _has(t, r"\mathcal"),
    "spacing": lambda t: _has(t, *SPACING),
    "function": lambda t: _has(t, r"\sin", r"\cos", r"\log", r"\exp", r"\ln", r"\tan"),
    "limit function": lambda t: _has(t, r"\det", r"\max", r"\min"),
    "relation": lambda t: _has(t, r"\leq", r"\geq", r"\neq", r"\approx", r"\equiv", r"\sim"),
    "binary operator": lambda t: _has(t, r"\times", r"\cdot", r"\pm"),
    "symbol": lambda t: _has(t, r"\partial", r"\nabla", r"\infty"),
    "decimal": lambda t: _has(t, "."),
    "subscript and superscript": lambda t: _has(t, "_") and _has(t, "^"),
    "rows and columns": lambda t: _has(t, r"\\") and _has(t, "&"),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_appears(sample: list[str], family: str) -> None:
    hits = sum(FAMILIES[family](formula.split()) for formula in sample)
    assert hits >= 5, f"{family}: only {hits} of {len(sample)} formulas"


def test_mostly_distinct() -> None:
    formulas = generate_formulas(5000, seed=0)
    assert len(set(formulas)) >= 0.95 * len(formulas)


def test_length_distribution(sample: list[str]) -> None:
    lengths = sorted(len(formula.split()) for formula in sample)
    assert 20 <= statistics.median(lengths) <= 35, statistics.median(lengths)
    assert lengths[int(0.95 * len(lengths))] >= 60, "expected a tail of long formulas"


# -- real LaTeX ------------------------------------------------------------------------------


def test_formulas_compile_with_latex(tmp_path: Path) -> None:
    if shutil.which("latex") is None:
        pytest.skip("latex is not on PATH")
    formulas = generate_formulas(300, seed=1)
    body = "".join(
        f"\\begin{{displaymath}} {formula} \\end{{displaymath}}\\clearpage\n"
        for formula in formulas
    )
    (tmp_path / "formulas.tex").write_text(PREAMBLE + body + "\\end{document}\n")
    subprocess.run(
        ["latex", "-interaction=batchmode", "-file-line-error", "-no-shell-escape", "formulas.tex"],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
        check=False,
    )
    log = (tmp_path / "formulas.log").read_text(errors="replace")
    errors = ERROR_LINE.findall(log)
    assert not errors, "\n".join(line for line in log.splitlines() if ERROR_LINE.match(line))
    assert "Output written on formulas.dvi (300 pages" in log
    assert "Overfull \\vbox" not in log, "a formula is taller than a page"


# -- files and CLI ---------------------------------------------------------------------------


def test_write_formulas_creates_dirs_and_ends_with_newline(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "formulas.txt"
    assert write_formulas(["x = 1", "y"], path) == 2
    assert path.read_text(encoding="utf-8") == "x = 1\ny\n"


def test_cli_writes_count_lines(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "generated" / "formulas.norm.txt"
    settings = json.dumps({"generate": {"count": 250, "seed": 4}})
    with caplog.at_level("INFO"):
        assert main(["--settings", settings, "--out", str(out)]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 250
    assert lines == generate_formulas(250, seed=4)
    assert f"generate: wrote 250 formulas ({len(set(lines))} distinct) to {out}" in caplog.text


def test_cli_reads_params_file(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("generate:\n  count: 20\n  seed: 9\n  max_tokens: 40\n")
    out = tmp_path / "formulas.txt"
    assert main(["--params", str(params), "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8").splitlines() == generate_formulas(20, 9, 40)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"count": 0, "seed": 0}, "generate.count = 0: must be at least 1"),
        ({"count": "10", "seed": 0}, "generate.count = '10': must be an integer"),
        ({"count": True, "seed": 0}, "generate.count = True: must be an integer"),
        ({"count": 10, "seed": 0, "max_tokens": 2}, "generate.max_tokens = 2: must be at least"),
        ({"count": 10, "seed": 0, "cout": 1}, "generate: unknown key 'cout'; allowed keys"),
    ],
)
def test_cli_rejects_bad_settings(tmp_path: Path, settings: dict, message: str) -> None:
    out = tmp_path / "formulas.txt"
    with pytest.raises(SystemExit, match=re.escape(message)):
        main(["--settings", json.dumps({"generate": settings}), "--out", str(out)])
    assert not out.exists()
