"""The normalizer: raw LaTeX to the im2latex-100k token format, through real Node and KaTeX.

Every expected output below was written by hand from the format's rules (README, Normalizing raw
LaTeX) and the lists in ../shared/data. All cases go through one Node process (the module
fixture), as a whole list does.
"""

from __future__ import annotations

import gzip
import json

import pytest

from pipeline.config import SplitRatios
from pipeline.corpus import normalize, step0, texsafe

CASES = [
    # the examples
    (r"{a\over b}", r"{ \frac { a } { b } }"),
    (r"x_1^2", r"x _ { 1 } ^ { 2 }"),
    (r"f''", r"f ^ { \prime \prime }"),
    (r"{\rm sin}", r"\mathrm { s i n }"),
    (r"\hat N", r"\hat { N }"),
    # scripts: always braced, subscript first, \sp and \sb are ^ and _
    (r"x^2_i", r"x _ { i } ^ { 2 }"),
    (r"x\sp 2", r"x ^ { 2 }"),
    (r"x\sb{ij}\sp{2}", r"x _ { i j } ^ { 2 }"),
    (r"e^{-x^2}", r"e ^ { - x ^ { 2 } }"),
    (r"{}^{14}C", r"{ } ^ { 1 4 } C"),
    (r"f'(x)=g'_1", r"f ^ { \prime } ( x ) = g _ { 1 } ^ { \prime }"),
    (r"\psi'''", r"\psi ^ { \prime \prime \prime }"),
    # fractions: \over, \choose and \atop; arguments braced only as written
    (r"a\over b", r"\frac { a } { b }"),
    (r"{n \choose k}", r"{ \binom { n } { k } }"),
    (r"{a\atop b}", r"{ a \atop b }"),
    (r"\frac12", r"\frac 1 2"),
    (r"\frac{1}{2}", r"\frac { 1 } { 2 }"),
    (r"\frac{\partial f}{\partial x}", r"\frac { \partial f } { \partial x }"),
    (r"\dfrac{a}{b}", r"\dfrac { a } { b }"),
    (r"\binom{n}{2}", r"\binom { n } { 2 }"),
    (r"\sqrt2", r"\sqrt 2"),
    (r"\sqrt[3]{x+1}", r"\sqrt [ 3 ] { x + 1 }"),
    # font groups: \rm becomes \mathrm, the other switches stay as written
    (r"{\rm d}x", r"\mathrm { d } x"),
    (r"\rm{max}", r"\mathrm { m a x }"),
    (r"{\bf v}\cdot{\bf w}", r"{ \bf v } \cdot { \bf w }"),
    (r"{\cal L}_{int}", r"{ \cal L } _ { i n t }"),
    (r"{\it et al}", r"{ \it e t a l }"),
    (r"\mathbf{x}+\mathbf y", r"\mathbf { x } + \mathbf y"),
    (r"\mathcal{O}(n)", r"\mathcal { O } ( n )"),
    (r"\mathbb{R}^n", r"\mathbb { R } ^ { n }"),
    (r"{\displaystyle\sum_i}", r"{ \displaystyle \sum _ { i } }"),
    # accents: always braced, a braced group kept as written
    (r"\bar x + \vec{v}", r"\bar { x } + \vec { v }"),
    (r"\tilde{{\cal Z}}", r"\tilde { { \cal Z } }"),
    (r"\widehat{AB}", r"\widehat { A B }"),
    (r"\overline{z}", r"\overline { z }"),
    (r"\dot q", r"\dot { q }"),
    # delimiters
    (r"\left(\frac{a}{b}\right)", r"\left( \frac { a } { b } \right)"),
    (r"\left.\frac{df}{dx}\right|_{x=0}", r"\left. \frac { d f } { d x } \right| _ { x = 0 }"),
    (r"\left\{ x \right\}", r"\left\{ x \right\}"),
    (r"\Big( x \Big)", r"\Big ( x \Big )"),
    (r"\bigl[ a \bigr]", r"\bigl [ a \bigr ]"),
    (r"\langle\psi|\phi\rangle", r"\langle \psi | \phi \rangle"),
    # spacing commands stay; \> and \~ are removed
    (r"a\,b\;c\:d\!e", r"a \, b \; c \: d \! e"),
    (r"a\quad b\qquad c", r"a \quad b \qquad c"),
    (r"a~b\ c", r"a ~ b \ c"),
    (r"a\>b", r"a b"),
    (r"\~a", r"a"),
    (r"x\hspace{1cm}y", r"x \hspace { 1 c m } y"),
    # text: \mbox, \hbox and \text are \mathrm, a space in them is ~
    (r"\mbox{for all } x", r"\mathrm { f o r ~ a l l ~ } x"),
    (r"\hbox{if}\ x>0", r"\mathrm { i f } \ x > 0"),
    (r"\text{and}", r"\mathrm { a n d }"),
    (r"\textrm{ where }", r"\textrm { ~ w h e r e ~ }"),
    # operators
    (r"\sin x\cos y", r"\sin x \cos y"),
    (r"\lim_{n\to\infty}a_n", r"\lim _ { n \to \infty } a _ { n }"),
    (r"\operatorname{tr}A", r"\operatorname { t r } A"),
    (r"\operatorname*{argmax}_x", r"\operatorname* { a r g m a x } _ { x }"),
    (r"\int\limits_0^1 f", r"\int \limits _ { 0 } ^ { 1 } f"),
    (r"\sum_{i=1}^{n} i", r"\sum _ { i = 1 } ^ { n } i"),
    # removed: comments, labels, tags, $
    (r"E=mc^2 % Einstein", r"E = m c ^ { 2 }"),
    (r"x=1\label{eq:one}", r"x = 1"),
    (r"$x+y$", r"x + y"),
    (r"100\% \$5", r"1 0 0 \% \$ 5"),
    # \\ is kept only inside arrays; elsewhere it is a thin space, as in im2markup
    (r"a=b\\c=d", r"a = b \, c = d"),
    # multi-line environments keep every row
    (
        r"\begin{array}{cc}a&b\\c&d\end{array}",
        r"\begin{array} { c c } { a } & { b } \\ { c } & { d } \\ \end{array}",
    ),
    (
        r"\begin{array}{l|r}x\\\hline y\\\end{array}",
        r"\begin{array} { l | r } { x } \\ \hline { y } \\ \end{array}",
    ),
    (
        r"\begin{pmatrix}1&0\\0&1\end{pmatrix}",
        r"\begin{pmatrix} { 1 } & { 0 } \\ { 0 } & { 1 } \\ \end{pmatrix}",
    ),
    (
        r"\left(\begin{matrix}a&b\\c&d\end{matrix}\right)",
        r"\left( \begin{matrix} { a } & { b } \\ { c } & { d } \\ \end{matrix} \right)",
    ),
    (
        r"\begin{bmatrix}x\\y\\z\end{bmatrix}",
        r"\begin{bmatrix} { x } \\ { y } \\ { z } \\ \end{bmatrix}",
    ),
    (
        r"f(x)=\begin{cases}1&x>0\\0&\mbox{otherwise}\end{cases}",
        r"f ( x ) = \begin{cases} { 1 } & { x > 0 } \\ { 0 } & { \mathrm { o t h e r w i s e } } \\"
        r" \end{cases}",
    ),
    (
        r"\begin{aligned}a&=b+c\\&=d\end{aligned}",
        r"\begin{aligned} { a } & { = b + c } \\ { } & { = d } \\ \end{aligned}",
    ),
    (
        r"\begin{align}x&=1\\y&=2\end{align}",
        r"\begin{aligned} { x } & { = 1 } \\ { y } & { = 2 } \\ \end{aligned}",
    ),
    # other arXiv constructs
    (r"\stackrel{def}{=}", r"\stackrel { d e f } { = }"),
    (r"\not= \ne \neq", r"\not = \ne \neq"),
    (r"a\cdots b\ldots c\dots", r"a \cdots b \ldots c \dots"),
    (r"\underbrace{a+b}_{n}", r"\underbrace { a + b } _ { n }"),
    (r"\phantom{x}\vphantom{y}", r"\phantom { x } \vphantom { y }"),
    (r"D_{--}", r"D _ { -- }"),
    (r"\alpha\beta\Gamma", r"\alpha \beta \Gamma"),
    (r"x\in\mathbb{Z}\,,", r"x \in \mathbb { Z } \, ,"),
    # already normalized formulas come back unchanged
    (r"\frac { 1 } { 2 } \sum _ { i } x _ { i }", r"\frac { 1 } { 2 } \sum _ { i } x _ { i }"),
    (r"\textrm { a n d } \ x", r"\textrm { a n d } \ x"),
]
REJECTED = [
    (r"\frac{a}{b", "expected '}'"),
    (r"\undefinedmacro x", r"Undefined control sequence: \undefinedmacro"),
    (r"\begin{tabular}{c}a\end{tabular}", "No such environment: tabular"),
    ("\u03b1 + 1", "non-ASCII character U+03B1"),
    (r"x^1^2", "Double superscript"),
]

# Normalized as written, and then refused by texsafe before TeX sees them, with the reason.
REFUSED_BY_TEXSAFE = [
    (r"\buildrel D \over \to", r"\buildrel at token 3 has no matching \over"),
    (r"\fbox{\left( x \right)}", r"\fbox at token 1 has \left in text mode"),
]


@pytest.fixture(scope="module")
def outcomes() -> dict[str, normalize.Normalized]:
    """Every case through one Node process, as normalize does a whole list."""
    formulas = [raw for raw, _ in CASES + REJECTED + REFUSED_BY_TEXSAFE]
    return dict(zip(formulas, normalize.normalize_formulas(formulas), strict=True))


def test_there_are_at_least_sixty_hand_written_cases():
    assert len({raw for raw, _ in CASES}) == len(CASES) >= 60


@pytest.mark.parametrize(("raw", "expected"), CASES, ids=[raw for raw, _ in CASES])
def test_normalizes_to_the_token_format(outcomes, raw, expected):
    assert outcomes[raw] == normalize.Normalized(expected)


@pytest.mark.parametrize(("raw", "message"), REJECTED, ids=[raw for raw, _ in REJECTED])
def test_a_formula_that_cannot_be_normalized_says_why(outcomes, raw, message):
    outcome = outcomes[raw]
    assert outcome.tokens is None and message in outcome.message, outcome


def test_normalizing_the_output_again_changes_nothing(outcomes):
    expected = [e for _, e in CASES]
    again = normalize.normalize_formulas(expected)
    assert [o.tokens for o in again] == expected


def test_everything_emitted_passes_texsafe_or_is_refused_there_with_a_reason(outcomes):
    refused = {
        raw: texsafe.check_formula(outcome.tokens)
        for raw, outcome in outcomes.items()
        if outcome.tokens and texsafe.check_formula(outcome.tokens)
    }
    assert set(refused) == {raw for raw, _ in REFUSED_BY_TEXSAFE}
    for raw, reason in REFUSED_BY_TEXSAFE:
        assert reason in refused[raw]


def test_the_file_stays_line_aligned_and_rejects_are_recorded_beside_it(tmp_path):
    raw = tmp_path / "raw.tex.txt.gz"
    lines = [r"{a\over b}", "", r"\frac{a}{b", r"x_1^2 % note"]
    raw.write_bytes(gzip.compress("\n".join(lines).encode() + b"\n\xff x\n"))
    out = tmp_path / "formulas.norm.txt"
    report = tmp_path / "normalize.json"
    assert normalize.main([str(raw), str(out), "--report", str(report)]) == 0
    written = out.read_text().split("\n")
    assert written == [r"{ \frac { a } { b } }", "", "", "x _ { 1 } ^ { 2 }", "", ""]
    rejects = [json.loads(line) for line in normalize.rejects_path(out).read_text().splitlines()]
    assert [(r["line"], r["reason"]) for r in rejects] == [(3, "katex"), (5, "not_utf8")]
    assert rejects[0]["formula"] == r"\frac{a}{b" and "expected '}'" in rejects[0]["message"]
    counts = json.loads(report.read_text())
    assert counts == {
        "lines": 5,
        "normalized": 2,
        "blank": 1,
        "rejected": 2,
        "rejected_by_reason": {"katex": 1, "not_utf8": 1},
    }
    # step0 counts the empty lines of rejected formulas as blank
    _, step0_report = step0.run(out, SplitRatios())
    assert (step0_report.lines, step0_report.blank, step0_report.formulas) == (5, 3, 2)


def test_the_stage_has_nothing_to_do_unless_step0_raw_and_checks_the_digest(tmp_path):
    raw = tmp_path / "raw.txt"
    raw.write_text("x_1\n")
    out = tmp_path / "out.txt"
    off = json.dumps({"step0": {"raw": False, "sha256": None}})
    assert normalize.main([str(raw), str(out), "--settings", off]) == 0
    assert out.read_text() == "" and normalize.rejects_path(out).read_text() == ""
    wrong = json.dumps({"step0": {"raw": True, "sha256": "0" * 64}})
    with pytest.raises(SystemExit, match=f"{raw} has sha256 [0-9a-f]{{64}}, expected 0{{64}}"):
        normalize.main([str(raw), str(out), "--settings", wrong])
