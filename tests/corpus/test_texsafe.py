"""Tests for pipeline.corpus.texsafe: what is refused, why, and that real formulas still pass.

The structural rules (optional arguments, \\hline placement, nesting limits, text mode, ...)
come from rendering batches with latex; the last tests re-run a few of those experiments
when latex is installed, so the reasons for the rules stay checked.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from pipeline.config import RenderSettings
from pipeline.corpus import render
from pipeline.corpus.texsafe import (
    ALLOWED_CONTROL_SEQUENCES,
    ALLOWED_ENVIRONMENTS,
    DANGEROUS_CONTROL_SEQUENCES,
    DEFAULT_MAX_CHARS,
    MAX_BOX_DEPTH,
    MAX_NESTING,
    check_formula,
    normalize,
    tokenize,
)
from tests.conftest import SHARED_DATA
from tests.corpus.boxes import ALLOWED, nested

REAL_FORMULAS = SHARED_DATA


def refused(formula: str) -> str:
    """The reason ``formula`` is refused; fails the test if it is accepted."""
    reason = check_formula(formula)
    assert reason is not None, f"accepted: {formula!r}"
    assert "\n" not in reason
    return reason


# --- malicious input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("formula", "offender"),
    [
        (r"\input { / e t c / p a s s w d }", r"\input"),
        (r"\input{/etc/passwd}", r"\input"),
        (r"x \include { f }", r"\include"),
        (r"\write18 { r m }", r"\write"),
        (r"\write 1 8 { r m }", r"\write"),
        (r"\immediate \write 1 8 { x }", r"\immediate"),
        (r"\openout 1 = x", r"\openout"),
        (r"\read 1 to \x", r"\read"),
        (r"\csname x \endcsname", r"\csname"),
        (r"\catcode ` \^ = 1 3", r"\catcode"),
        (r"\def \x { }", r"\def"),
        (r"\let \frac \input", r"\let"),
        (r"\newcommand { \x } { }", r"\newcommand"),
        (r"\special { s h : r m }", r"\special"),
        (r"\typeout { M A R K }", r"\typeout"),
        (r"\clearpage", r"\clearpage"),
        (r"\expandafter \x", r"\expandafter"),
        (r"\makeatletter", r"\makeatletter"),
        (r"\@input x", r"\@"),
        (r"\verb | x |", r"\verb"),
        (r"a\input b", r"\input"),  # TeX reads a then \input, so must we
        (r"\frac { 1 } { \input x }", r"\input"),
        (r"\unknowncommand x", r"\unknowncommand"),
    ],
)
def test_dangerous_control_sequences_are_refused_by_name(formula: str, offender: str) -> None:
    reason = refused(formula)
    assert f"control sequence {offender} is not allowed" in reason


def test_known_dangerous_names_say_why() -> None:
    assert "files" in refused(r"\input x")
    assert "redefine" in refused(r"\def \x { }")
    assert "not in the allow-list" in refused(r"\foo")


@pytest.mark.parametrize(
    ("formula", "environment"),
    [
        (r"\end{document}", "document"),
        (r"x \end { d o c u m e n t }", "document"),
        (r"\begin{verbatim} x \end{verbatim}", "verbatim"),
        (r"\begin{filecontents} x \end{filecontents}", "filecontents"),
        (r"\begin{align} x \end{align}", "align"),
        (r"\begin{tabular} { c } x \end{tabular}", "tabular"),
    ],
)
def test_environments_outside_the_allow_list_are_refused(formula: str, environment: str) -> None:
    assert refused(formula).startswith(f"environment {environment} is not allowed")


@pytest.mark.parametrize(
    ("formula", "expected"),
    [
        ("x % comment", "character '%' is not allowed"),
        ("$ x $", "character '$' is not allowed"),
        ("# 1", "character '#' is not allowed"),
        ("^^5cinput", "TeX hex escape ^^ is not allowed"),
        ("^^5c input", "TeX hex escape ^^ is not allowed"),
        ("x ^^ 2", "TeX hex escape ^^ is not allowed"),
        ("\\^^5c", "TeX hex escape ^^ is not allowed"),
        ("caf\u00e9", "non-ASCII character '\\u00e9' is not allowed"),
        ("x \U0001f600", "non-ASCII character '\\U0001f600' is not allowed"),
        ("x \u00a0 y", "non-ASCII character '\\u00a0' is not allowed"),
        ("x\ny", "control character '\\x0a' is not allowed"),
        ("x\ry", "control character '\\x0d' is not allowed"),
        ("x\ty", "control character '\\x09' is not allowed"),
        ("x\x00y", "control character '\\x00' is not allowed"),
        ("x\x7fy", "control character '\\x7f' is not allowed"),
    ],
)
def test_characters_that_change_how_tex_reads_input_are_refused(
    formula: str, expected: str
) -> None:
    assert refused(formula) == expected or refused(formula).startswith(expected)


def test_separate_carets_are_two_superscripts_not_a_hex_escape() -> None:
    # TeX only decodes ^^ when the two carets touch; "^ ^" is a (bad) double superscript,
    # an ordinary TeX error confined to this formula.
    assert check_formula("x ^ ^ 5 c") is None


def test_escaped_specials_are_fine() -> None:
    assert check_formula(r"5 0 \% \; \# \; \$ \; \& \; \_ \; \{ x \}") is None


def test_empty_and_oversized_formulas() -> None:
    assert refused("") == "empty formula"
    assert refused(" \t\n") == "empty formula"
    long = "x " * DEFAULT_MAX_CHARS
    assert refused(long) == (
        f"formula has {len(long)} characters, above the limit of {DEFAULT_MAX_CHARS}"
    )
    assert check_formula("x + y", max_chars=5) is None
    assert check_formula("x + y z", max_chars=5) == (
        "formula has 7 characters, above the limit of 5"
    )


def test_joined_digits_are_refused() -> None:
    # im2latex writes numbers digit by digit; a joined "100cm" would let TeX read a large
    # length (huge images) or repeat count.
    assert refused(r"\hspace { 100cm }") == (
        "token 3 '100cm' joins a digit to other characters (write digits apart)"
    )
    assert "'\\frac12'" in refused(r"\frac12")
    assert check_formula(r"\hspace { 1 0 0 c m }") is None


def test_unitlength_cannot_be_scaled_repeatedly() -> None:
    assert "\\unitlength may appear only once" in refused(
        r"\unitlength = 9 \unitlength \hspace { 9 \unitlength }"
    )


# --- structure -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("formula", "expected"),
    [
        ("x ^ { 2", "unbalanced braces: 1 unclosed { (first at token 3)"),
        ("{ { x", "unbalanced braces: 2 unclosed { (first at token 1)"),
        (r"\label {", "unbalanced braces: 1 unclosed { (first at token 2)"),
        ("x ^ { 2 } } + y", "unbalanced braces: } at token 6 closes nothing"),
        (r"\{ x", None),  # \{ is a character, not a brace
        (r"x \}", None),
        (r"\\{ x", "unbalanced braces: 1 unclosed { (first at token 1)"),  # \\ then {
        (
            r"x + \begin{array} { c } x",
            "\\begin{array} at token 3 is never closed",
        ),
        (
            r"\begin{array} { c c } a & b \\ c \end{matrix}",
            "\\end{matrix} at token 11 does not match \\begin{array} at token 1",
        ),
        (r"x \end{array}", "\\end{array} at token 2 has no matching \\begin"),
        (
            r"{ \begin{array} { c } a } \end{array}",
            "} at token 7 comes before the \\end of \\begin{array} at token 2",
        ),
        (
            r"\begin{array} { c } { a \end{array} }",
            "unbalanced braces: { at token 5 is still open at \\end{array} at token 7",
        ),
        (r"\left( x", "\\left at token 1 has no matching \\right"),
        (r"x \right)", "\\right at token 2 has no matching \\left"),
        (r"\left( { x \right) }", "\\right at token 4 has no matching \\left"),
        (r"{ \left( x } \right)", "\\left at token 2 has no matching \\right"),
        (
            r"\begin{array} { c c } \left( a & b \right) \end{array}",
            "\\left at token 6 has no matching \\right before & at token 8",
        ),
        (r"\left{ x \right}", "\\left at token 1 is not followed by a delimiter"),
        (r"x \middle| y", "\\middle at token 2 has no matching \\left"),
        (r"\begin x", "\\begin at token 1 must be followed by {environment name}"),
    ],
)
def test_structure(formula: str, expected: str | None) -> None:
    assert check_formula(formula) == expected


def test_split_environment_tokens_are_understood() -> None:
    assert check_formula(r"\begin { a r r a y } { c } x \end { a r r a y }") is None
    assert check_formula(r"\begin { array } { c } x \end { array }") is None
    assert "never closed" in refused(r"\begin { a r r a y } { c } x")


def test_nesting_is_limited() -> None:
    deep = "{ " * MAX_NESTING + "x" + " }" * MAX_NESTING
    assert check_formula(deep) is None
    deeper = "{ " * (MAX_NESTING + 1) + "x" + " }" * (MAX_NESTING + 1)
    assert refused(deeper) == f"{{ at token {MAX_NESTING + 1} nests deeper than 32 groups"


def test_boxes_nested_deeper_than_dvipng_draws_are_refused() -> None:
    """Counted per construct: \\fbox costs 6 DVI levels, \\frac 3, a plain group none."""
    assert MAX_BOX_DEPTH == 60
    assert check_formula(nested("\\fbox", 10)) is None
    reason = refused(nested("\\fbox", 11))
    assert reason == "\\fbox at token 21 nests boxes deeper than dvipng can draw (66 > 60 levels)"
    assert check_formula(nested("\\boxed", 5, nested("\\frac", 10))) is None
    assert "(63 > 60 levels)" in refused(nested("\\boxed", 5, nested("\\frac", 11)))
    # an infix fraction boxes its whole group, what comes before it included
    assert "(63 > 60 levels)" in refused(nested("\\over", 1, nested("\\boxed", 10)))
    assert "(63 > 60 levels)" in refused(nested("\\boxed", 10) + " \\over 2")
    assert check_formula(nested("\\boxed", 10) + " + { 1 \\over 2 }") is None
    # environments, and the rules \\hline adds to them
    assert check_formula(nested("array", 20)) is None
    assert "(61 > 60 levels)" in refused(nested("\\hline", 16))
    assert check_formula(nested("{ }", MAX_NESTING)) is None


def test_text_accents_that_tex_refuses_in_math_are_refused_outside_text() -> None:
    assert (
        refused("\\' { e }")
        == "\\' at token 1 is a text accent, which TeX refuses in math: use \\text { }"
    )
    assert check_formula("\\text { \\' { e } } + \\mbox { \\v { c } }") is None
    assert check_formula("\\d { x } + \\b { y }") is None  # these two draw their own boxes


def test_style_copying_commands_cannot_nest_deeply() -> None:
    # Each level of \pmb, \boldsymbol, \phantom, \sqrt[n] ... typesets its argument 4 times.
    assert check_formula(r"\pmb { \phantom { \sqrt [ 3 ] { x } } }") is None
    assert check_formula(r"\sqrt { \sqrt { \sqrt { \sqrt { x } } } }") is None
    reason = refused(r"\pmb { \boldsymbol { \phantom { \smash { x } } } }")
    assert (
        reason
        == "\\smash at token 7 nests commands that copy their argument 256 times (the limit is 64)"
    )
    # \\widehat and the text accents typeset their argument twice
    assert check_formula(nested("\\widehat", 6)) is None
    assert "128 times" in refused(nested("\\widehat", 7))
    assert "128 times" in refused(nested("\\pmb", 2, nested("\\widetilde", 3)))


# --- arguments -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("formula", "expected"),
    [
        # an unterminated optional or delimited argument reads on into the next formulas
        (r"\sqrt [ 3 { x }", "\\sqrt at token 1 has [ never closed by ]"),
        (r"\put ( 1 , 2 { x }", "\\put at token 1 has ( never closed by )"),
        (r"\put ( 1 ) { x }", "\\put at token 1 has ( ) without the comma of x , y"),
        (r"\buildrel x } y", "unbalanced braces: } at token 3 closes nothing"),
        (r"{ \buildrel x } y", "\\buildrel at token 2 has no matching \\over"),
        (r"{ \label A } x", "\\label at token 2 needs a { } argument"),
        (
            r"\begin{array} { c } \cline { x } a \end{array}",
            "\\cline at token 5 needs a column range { n - m }",
        ),
        # a missing argument makes TeX take \end{displaymath} instead
        (r"\frac { a }", "\\frac at token 1 is missing an argument"),
        ("x ^", "^ at token 2 is missing an argument"),
        ("{ x _ } y", "_ at token 3 is missing an argument"),
        (r"\sqrt \left( x \right)", "\\sqrt at token 1 is missing an argument"),
        (r"\hat & x", "\\hat at token 1 is missing an argument"),
        # endless loops in TeX's alignment code
        (
            r"\begin{array} { c } x \\ [ 2 p t ] y \end{array}",
            "\\\\ at token 6 is followed by [, which TeX reads as a length: write { [ }",
        ),
        (
            r"\begin{array} \hline x \end{array}",
            "\\begin{array} at token 1 is missing an argument",
        ),
        (
            r"\begin{array} { c } x \hline y \end{array}",
            "\\hline at token 6 is not at the start of a row of an array",
        ),
        (
            r"\begin{array} { p } x \end{array}",
            "\\begin{array} at token 1 needs a column spec made of l c r |",
        ),
        (
            r"\begin{array} { * { 9 } { c } } x \end{array}",
            "\\begin{array} at token 1 needs a column spec made of l c r |",
        ),
        (
            r"\begin{array} [ x ] { c } x \end{array}",
            "\\begin{array} at token 1 takes only [ t ], [ b ] or [ c ]",
        ),
        (
            r"\begin{aligned} x \\ \hline y \end{aligned}",
            "\\hline at token 4 is not at the start of a row of an array",
        ),
        (
            r"\begin{array} { c c } x \multicolumn { 1 } { c } { y } \end{array}",
            "\\multicolumn at token 7 is not at the start of a cell of an array",
        ),
        # text mode turns each math command into several errors
        (
            r"\mbox { \alpha }",
            "\\mbox at token 1 has \\alpha in text mode, where it is not allowed",
        ),
        (r"\text { x ^ 2 }", "\\text at token 1 has ^ in text mode, where it is not allowed"),
        (
            r"\fbox { \begin{array} { c } x \end{array} }",
            "\\fbox at token 1 has \\begin in text mode, where it is not allowed",
        ),
        (r"x \= \sum", "\\= at token 2 has \\sum in text mode, where it is not allowed"),
        # an unbraced command argument is cut off from its own arguments
        (
            r"\sqrt \frac 1 2",
            "\\sqrt at token 1 would take \\frac without its arguments: add { } around them",
        ),
        (
            r"\fbox \H x",
            "\\fbox at token 1 would take \\H without its arguments: add { } around them",
        ),
        (r"\big { x }", "\\big at token 1 is not followed by a delimiter"),
        (r"\begin{picture} x \end{picture}", "\\begin{picture} at token 1 needs ( x , y )"),
        (r"\line { 2 }", "\\line at token 1 needs ( x , y )"),
        (
            r"\begin{alignedat} { x } a \end{alignedat}",
            "\\begin{alignedat} at token 1 needs a number of columns { n }",
        ),
        (
            r"\begin{array} { c } { a \\ b } \end{array}",
            "\\\\ at token 7 is inside { at token 5 within an array",
        ),
        (
            r"\begin{split} x \end{split} & y",
            "& at token 4 is outside any array, which breaks \\begin{split} at token 1",
        ),
    ],
)
def test_argument_shapes(formula: str, expected: str) -> None:
    assert check_formula(formula) == expected


def test_primitives_may_take_an_unbraced_command() -> None:
    # ^, _ and \mathbin read a math field and expand it, as real formulas rely on.
    assert check_formula(r"x _ \mathrm { m a x } + y \sp \frac 1 2 \mathbin \mathrm { d }") is None


def test_stray_alignment_characters_cost_one_error_and_are_left_alone() -> None:
    assert check_formula(r"a & b \\ c") is None
    assert check_formula(r"\begin{split} a & = b \\ & = c \end{split}") is None


# --- accepted --------------------------------------------------------------------------------

GOOD_FORMULAS = [
    r"\frac { 1 } { 2 } + \dfrac { a } { b } - \tfrac 1 2",
    r"x ^ { 2 } + y _ { i j } ^ { \prime } = \sqrt { z } + \sqrt [ 3 ] { w }",
    r"\begin{array} { c c } a & b \\ c & d \end{array}",
    r"\begin{array} { l c r } \hline a & b & c \\ \hline \cline { 1 - 2 } d & e & f \end{array}",
    r"\begin{array} { c c } \multicolumn { 2 } { c } { x } \\ a & \multicolumn { 1 } { l } { b }"
    r" \end{array}",
    r"f ( x ) = \left\{ \begin{array} { l l } 1 & x > 0 \\ 0 & \mathrm { o t h e r w i s e }"
    r" \end{array} \right.",
    r"\left( \frac { a } { b } \right) \left[ x \right] \left| y \right|"
    r" \left\langle z \right\rangle",
    r"\left. \frac { d f } { d x } \right| _ { x = 0 }",
    r"{ \frac { d z } { d r } } = e ^ { 2 A } , \hspace { 1 c m } \psi"
    r" \rightarrow e ^ { - 3 A / 2 }",
    r"E = m c ^ { 2 } \ , \quad \mathrm { w i t h } \ c = 1",
    r"\operatorname* { l i m } _ { n \to \infty } a _ { n } = \operatorname { t a n } x",
    r"\begin{pmatrix} a & b \\ c & d \end{pmatrix} \begin{cases} 1 & x \\ 0 & y \end{cases}",
    r"\mathbb { R } \mathcal { L } \mathfrak { g } \boldsymbol { \alpha } \leqslant \geqslant",
    r"\varnothing \lesssim \gtrsim \mapsto \hookrightarrow \Longrightarrow",
    r"\sum _ { i = 1 } ^ { N } \int _ { 0 } ^ { \infty } \prod \bigoplus \oint",
    r"\overbrace { a + b } ^ { n } \underbrace { c } _ { m } \stackrel { d e f } { = }",
    r"\mbox { i f } \ x \textrm { a n d } \textbf { y } \text { \, o r \, } z",
    r"\bigl( x \bigr) \Big[ y \Big] \biggl\{ z \biggr\}",
    r"\buildrel \mathrm { d e f } \over = \quad { a \atop b } \quad { n \choose k }",
    r"[object Object] -- x --- y",
    r"\setlength { \unitlength } { 1 m m } \begin{picture} ( 2 , 1 ) \thicklines"
    r" \put ( 0 , 0 ) { \line ( 1 , 0 ) { 2 } } \put ( 1 , 1 ) { \circle* { 1 } } \end{picture}",
    r"\begin{aligned} [ t ] a & = b \\ & = c \end{aligned}",
    r"\sqrt [ \begin{array} { c } x \end{array} ] { y }",
    r"a \ b \ ",
    r"\overset { \text { d e f } } { = } \xrightarrow [ a ] { b } \label { e q 1 }",
]


@pytest.mark.parametrize("formula", GOOD_FORMULAS)
def test_normal_formulas_are_accepted(formula: str) -> None:
    assert check_formula(formula) is None


def test_brief_listed_commands_are_allowed() -> None:
    listed = r"""\mathrm \mathbf \mathcal \mathit \mathsf \mathtt \mathbb \mathfrak \boldsymbol \bf
    \it \rm \cal \sf \tt \sl \mit \boldmath \textrm \textbf \textit \text \mbox \textup
    \textnormal \emph \big \Big \bigg \Bigg \bigl \bigr \Bigl \Biggr \displaystyle \textstyle
    \scriptstyle \scriptscriptstyle \tiny \scriptsize \footnotesize \small \large \Large \LARGE
    \huge \, \; \: \! \quad \qquad \hspace \vspace \hfill \enspace \kern \phantom \hphantom
    \vphantom \smash \hskip \frac \dfrac \tfrac \binom \sqrt \stackrel \overset \underset \atop
    \over \choose \operatorname \underbrace \overbrace \overrightarrow \overleftarrow \not \label
    \nonumber \cdots \ldots \dots \vdots \ddots \hline \cline \multicolumn \raisebox \makebox
    \fbox \rlap \llap \mathrel \mathbin \mathord \mathop \limits \nolimits \prime \dagger \hbar
    \ell \imath \jmath \aleph \wp \Re \Im \partial \nabla \infty \emptyset \S \P \AA \ae \o \O \l
    \L \i \j \pounds \dag \ddag \slash \backslash \colon \bmod \pmod \mod \put \circle \line
    \vector \unitlength \setlength \thicklines \linethickness \{ \} \| \_ \& \# \% \$ \\ \-
    \leqslant \geqslant \varnothing \lesssim \gtrsim \mapsto \hookrightarrow \Longrightarrow"""
    missing = set(listed.split()) - ALLOWED_CONTROL_SEQUENCES
    assert not missing
    assert "\\ " in ALLOWED_CONTROL_SEQUENCES  # the control space, im2latex's lone \ token


def test_allow_list_and_dangerous_list_do_not_overlap() -> None:
    assert not ALLOWED_CONTROL_SEQUENCES & DANGEROUS_CONTROL_SEQUENCES.keys()
    assert {"document", "verbatim", "filecontents"}.isdisjoint(ALLOWED_ENVIRONMENTS)


def test_every_dangerous_name_is_refused_with_its_reason() -> None:
    for name, why in DANGEROUS_CONTROL_SEQUENCES.items():
        assert check_formula(f"x {name} y") == f"control sequence {name} is not allowed ({why})"


def test_tokenize_and_normalize() -> None:
    assert tokenize(r"  \frac  { 1 }   { 2 } ") == [r"\frac", "{", "1", "}", "{", "2", "}"]
    assert normalize(" a   b\n") == "a b"


# --- real data -------------------------------------------------------------------------------


def real_formulas() -> list[str]:
    """The validation formulas, read in place (skips the test when they are absent)."""
    if not REAL_FORMULAS.exists():
        pytest.skip(f"{REAL_FORMULAS} not present")
    return REAL_FORMULAS.read_text(encoding="utf-8").splitlines()


def test_real_formulas_are_accepted() -> None:
    formulas = real_formulas()
    reasons = [check_formula(formula) for formula in formulas]
    refusals = collections.Counter(
        re.sub(r"token \d+", "token N", reason) for reason in reasons if reason
    )
    rate = 1 - sum(refusals.values()) / len(formulas)
    print(f"\naccepted {rate:.4%} of {len(formulas)} real formulas; top refusals:")
    for reason, count in refusals.most_common(10):
        print(f"  {count:5d}  {reason}")
    assert rate >= 0.99


def test_checking_real_formulas_is_fast() -> None:
    formulas = real_formulas()
    best = float("inf")
    for _ in range(3):  # best of three, so a busy machine does not fail the test
        start = time.perf_counter()
        for formula in formulas:
            check_formula(formula)
        best = min(best, time.perf_counter() - start)
    assert best < 1.0, f"{len(formulas)} formulas took {best:.2f} s"


# --- the TeX behaviour behind the rules --------------------------------------------------------

PREAMBLE = (
    r"\documentclass[12pt]{article}\usepackage{amsmath}\usepackage{amssymb}"
    r"\pagestyle{empty}\begin{document}"
)


def render_markers(formulas: list[str], workdir: Path) -> list[int]:
    """Render a batch like the render stage does; return the markers TeX got to."""
    lines = [PREAMBLE]
    for number, formula in enumerate(formulas):
        lines.append(
            rf"\begin{{displaymath}} {formula} \end{{displaymath}}\clearpage"
            rf"\typeout{{MARK-{number}-}}"
        )
    lines.append(r"\end{document}")
    (workdir / "batch.tex").write_text("\n".join(lines) + "\n")
    env = {**os.environ, "openin_any": "p", "openout_any": "p", "shell_escape": "f"}
    subprocess.run(
        ["latex", "-interaction=nonstopmode", "-no-shell-escape", "batch.tex"],
        cwd=workdir,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    log = (workdir / "batch.log").read_text(errors="replace")
    return [int(number) for number in re.findall(r"^MARK-(\d+)-$", log, re.M)]


needs_latex = pytest.mark.skipif(shutil.which("latex") is None, reason="latex not installed")


@needs_latex
def test_accepted_formulas_render_without_losing_neighbours(tmp_path: Path) -> None:
    batch = ["a", *GOOD_FORMULAS, "b"]
    assert render_markers(batch, tmp_path) == list(range(len(batch)))


LOST = {"rasterize_error", "timeout"}  # what a formula that TeX could typeset may still meet


@needs_latex
def test_every_construct_nested_as_deep_as_allowed_is_drawn_by_dvipng() -> None:
    """The box limits are sound: each construct at its deepest accepted nesting renders."""
    deepest = {}
    for name in ALLOWED:
        levels = 1
        while levels < 2 * MAX_NESTING and check_formula(nested(name, levels + 1)) is None:
            levels += 1
        deepest[name] = nested(name, levels)
    settings = RenderSettings(dpi=30, batch_size=len(deepest))
    results = render.render_formulas(list(deepest.items()), settings)
    lost = {r.id: f"{r.reason}: {r.error}" for r in results if r.reason in LOST}
    assert not lost, lost
    # text accents are refused by TeX in math mode, and a phantom draws nothing
    assert sum(r.status == "ok" for r in results) > 100


@needs_latex
@pytest.mark.parametrize(
    "formula",
    [r"\sqrt [ 3 { x }", r"\label {", r"{ \label A } x", r"\put ( 1 , 2 { x }"],
)
def test_refused_structure_errors_really_swallow_the_batch(tmp_path: Path, formula: str) -> None:
    assert check_formula(formula) is not None
    assert render_markers(["a", formula, "b", "c"], tmp_path) == [0]
