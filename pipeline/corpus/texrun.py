"""Run TeX tools on untrusted input: a scratch directory, a hard timeout, no shell escape.

Kept apart from the render logic so the safety settings live in exactly one place and the
render stage, the benchmark and (later) the visual-match evaluation all share them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

# A formula must render the same in a batch as alone, but TeX keeps some state from one
# formula to the next that no formula sets on purpose:
# - amsmath keeps the kerns of nested accents in global macros, and some nestings (an accent
#   inside a \mathpalette inside another accent) read them before setting them, taking an
#   earlier formula's values in a batch: \freshformula resets them before every formula;
# - fonts load when first used, and a first use deep inside \boldsymbol or \mathchoice can fail
#   ("Use of \reserved@a doesn't match its definition") where a later one does not: every
#   document loads, in a box it throws away, each font and size the allow-list can select.
# The render fuzz in tests/corpus/test_render.py found both.
_PREAMBLE = r"""\documentclass[12pt]{article}
\usepackage{amsmath}
\usepackage{amssymb}
%FONT%
\pagestyle{empty}
\makeatletter
\newcommand\fontsample{x\textsf{x}\texttt{x}\textsl{x}\textsc{x}\textit{x}\textup{x}%
\textbf{x\textsf{x}\texttt{x}\textsl{x}\textsc{x}\textit{x}}}
\newcommand\mathsample{x\mathbb{x}\mathfrak{x}\mathcal{X}\mathsf{x}\mathtt{x}\mathit{x}%
\mathbf{x}\boldsymbol{x}\pmb{x}\text{\fontsample}^{x^{x}}}
\newcommand\fontwarmup{\@for\size:=tiny,scriptsize,footnotesize,small,normalsize,large,Large,%
LARGE,huge,Huge\do{\csname\size\endcsname\fontsample$\mathsample$\boldmath$\mathsample$%
\unboldmath}}
\newcommand\freshformula{\global\let\macc@kerna\@undefined\global\let\macc@kernb\@undefined}
\makeatother
\begin{document}
\setbox0\vbox{\fontwarmup}
"""

# render.font: each family's line in the preamble, from texlive-fonts-recommended's psnfss. One
# line each, so a formula sits on the same line whatever its font (errors are pinned by line).
FONT_PACKAGES = {
    "cm": "% Computer Modern, LaTeX's own",
    "times": r"\usepackage{mathptmx}",
    "palatino": r"\usepackage{mathpazo}",
}


def preamble(font: str = "cm") -> str:
    """The document up to the first formula, setting text and math in ``font``."""
    return _PREAMBLE.replace("%FONT%", FONT_PACKAGES[font])


PREAMBLE = preamble()


def display_math(formula: str) -> str:
    """A formula as a display, from a fresh state. The spaces matter: a formula ending in a
    control space ``\\`` would otherwise fuse with ``\\end`` into ``\\\\end``."""
    return rf"\freshformula\begin{{displaymath}} {formula} \end{{displaymath}}"


# kpathsea reads these from the environment. 'p' (paranoid) refuses absolute paths, '..' and
# dot files for TeX's own \openin/\openout; shell_escape=f disables \write18 entirely.
# max_print_line stops TeX from wrapping log lines, which keeps errors and markers parseable.
TEX_ENV = {
    "openin_any": "p",
    "openout_any": "p",
    "shell_escape": "f",
    "max_print_line": "100000",
    "error_line": "254",
    "half_error_line": "238",
}


@dataclass(frozen=True)
class ToolResult:
    """One TeX-family process: exit code, captured output, and whether we had to kill it."""

    returncode: int
    output: str
    timed_out: bool


def tex_environment() -> dict[str, str]:
    """The caller's environment with TeX's file and shell access locked down."""
    env = dict(os.environ)
    env.update(TEX_ENV)
    env.pop("TEXMFOUTPUT", None)
    return env


def run_tool(args: list[str], cwd: Path, timeout_s: float) -> ToolResult:
    """Run a command in its own process group and kill the whole group on timeout.

    TeX may spawn helpers (mktexpk, mktextfm); killing only the parent would leave them running.
    """
    proc = subprocess.Popen(
        args,
        cwd=cwd,
        env=tex_environment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout_s)
        return ToolResult(proc.returncode, out.decode("utf-8", "replace"), False)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        out, _ = proc.communicate()
        return ToolResult(-signal.SIGKILL, out.decode("utf-8", "replace"), True)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def run_latex(tex_file: Path, timeout_s: float) -> ToolResult:
    """Compile to DVI in batch mode; errors go to the log as ``file:line: message``."""
    return run_tool(
        [
            "latex",
            "-interaction=batchmode",
            "-file-line-error",
            "-no-shell-escape",
            tex_file.name,
        ],
        tex_file.parent,
        timeout_s,
    )


def run_dvipng(
    dvi_file: Path, dpi: int, timeout_s: float, first_page: int, last_page: int
) -> ToolResult:
    """Rasterize pages first_page..last_page, each cropped tight to its ink, as ``page<n>.png``.

    Page numbers count pages in the file (dvipng's ``=n``), not TeX's page counter.
    """
    return run_tool(
        [
            "dvipng",
            "-q",
            "-p",
            f"={first_page}",
            "-l",
            f"={last_page}",
            "-D",
            str(dpi),
            "-T",
            "tight",
            "-z",
            "1",
            "-o",
            "page%d.png",
            dvi_file.name,
        ],
        dvi_file.parent,
        timeout_s,
    )


@cache
def tool_versions() -> tuple[str, str]:
    """The first line of ``latex --version`` and ``dvipng --version``: what renders, for keys."""
    lines = []
    for tool in ("latex", "dvipng"):
        out = subprocess.run([tool, "--version"], capture_output=True, text=True, check=False)
        lines.append(out.stdout.splitlines()[0] if out.stdout else f"{tool}: no version")
    return lines[0], lines[1]
