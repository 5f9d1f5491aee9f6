"""Synthesize formulas in im2latex's normalized token format from a small seeded grammar.

Real formula corpora are limited and messy; a grammar gives an unlimited, reproducible supply
whose token conventions (split braces, single-letter tokens, ``\\left(`` as one token) match
im2latex-100k exactly, so everything downstream (rendering, vocabulary, models) sees one format.
The grammar is deliberately tidy: a model has to be able to learn it to a high BLEU, so structure
nests like real physics/maths formulas (expression -> terms -> decorated atoms) rather than noise.
Every construct is restricted to what plain LaTeX + amsmath + amssymb typesets without errors.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable, Iterable
from pathlib import Path

from pipeline import cli
from pipeline.config import MIN_FORMULA_TOKENS, GenerateSettings

MAX_DEPTH = 3
MAX_ATTEMPTS = 200
READS = ("generate",)  # the params this stage reads (dvc.yaml lists the same)


def _words(text: str) -> tuple[str, ...]:
    """Tables are written as space-separated strings; repeats act as weights for ``choice``."""
    return tuple(text.split())


def _phrases(text: str) -> tuple[str, ...]:
    """Multi-token table entries are separated by ``|`` and split into tokens when used."""
    return tuple(part.strip() for part in text.split("|"))


def _pairs(text: str) -> tuple[tuple[str, str], ...]:
    """Delimiter tables list opening and closing tokens alternately."""
    words = _words(text)
    return tuple(zip(words[::2], words[1::2], strict=True))


LATIN_LOWER = tuple("abcdefghijklmnopqrstuvwxyz")
LATIN_UPPER = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
LATIN_LETTERS = LATIN_LOWER + LATIN_UPPER
GREEK_LOWER = _words(
    r"\alpha \beta \gamma \delta \epsilon \varepsilon \zeta \eta \theta \vartheta \iota \kappa"
    r" \lambda \mu \nu \xi \pi \rho \sigma \tau \upsilon \phi \varphi \chi \psi \omega"
)
GREEK_UPPER = _words(r"\Gamma \Delta \Theta \Lambda \Xi \Pi \Sigma \Upsilon \Phi \Psi \Omega")
# Symbols carry their customary decoration instead of random scripts (``\nabla ^ { 2 }``).
SYMBOLS = _phrases(
    r"\infty | \partial | \partial _ { \mu } | \partial _ { t } | \nabla | \nabla ^ { 2 } | \hbar"
    r" | \ell"
)
INDICES = _words(r"i j k l m n p q r s t i j k n 0 1 2 \mu \nu \alpha \beta \sigma")
SUBSCRIPTS = _phrases(
    r"i j | \mu \nu | i + 1 | n - 1 | 2 n | k + 1 | 0 | 1 2 | \mathrm { e f f } | \mathrm { m a x }"
)
SUPERSCRIPTS = _phrases(
    r"2 | 2 | 2 | 2 | n | k | 3 | - 1 | - 2 | \prime | * | \dagger | T | 2 n | \frac { 1 } { 2 }"
    r" | - \frac { 1 } { 2 } | i k x | - i \omega t | 2 \pi i"
)
# Chance that a factor is a structure rather than a plain decorated atom, by depth: deeper
# levels thin out so that lengths stay realistic and nesting stays readable.
STRUCTURE_PROBABILITY = (0.5, 0.3, 0.15)
# Chance of one more term in an expression, by depth.
MORE_TERMS_PROBABILITY = (0.42, 0.3, 0.25, 0.25)
BINARY_OPS = _words(
    r"+ + + + + + - - - - \times \cdot \pm \mp \otimes \oplus \cup \cap \wedge \circ /"
)
RELATIONS = _words(
    r"= = = = = = = = = = \neq \leq \geq < > \approx \equiv \sim \simeq \propto \in \subset"
    r" \subseteq \to \rightarrow \Rightarrow \mapsto \ll \cong"
)
# Only power functions take ``^ { 2 }`` right after the name, only ``\log`` takes a base.
POWER_FUNCTIONS = _words(r"\sin \cos \tan \sinh \cosh \tanh")
FUNCTIONS = _words(r"\ln \exp \det \arctan \arg \dim \ker \exp")
LIMIT_FUNCTIONS = _words(r"\max \min \sup \inf")
OPERATOR_NAMES = _phrases("t r | T r | s g n | d i v | r a n k | R e | I m | e r f | s p a n")
ROMAN_WORDS = _phrases("i | T r | d e t | c o n s t | e f f | i n | o u t | m a x | e x t")
CONDITIONS = (
    (r"\mathrm { i f }", r"\mathrm { o t h e r w i s e }"),
    (r"\mathrm { f o r }", r"\mathrm { e l s e }"),
)
SUMS = _words(r"\sum \sum \sum \sum \prod \bigcup \bigoplus \bigcap \coprod")
INTEGRALS = _words(r"\int \int \int \int \int \oint \iint")
NARROW_ACCENTS = _words(r"\hat \bar \tilde \vec \dot \ddot \check")
WIDE_ACCENTS = _words(r"\overline \underline \widetilde \widehat")
# Opening/closing pairs, plain ones repeated for weight; only the ``\left``/``\right`` pairs
# may wrap environments.
LEFT_RIGHT = _pairs(
    r"\left( \right) \left( \right) \left[ \right] \left\{ \right\} \left| \right|"
    r" \left\langle \right\rangle \left\| \right\|"
)
DELIMITERS = _pairs(r"( ) ( ) ( ) [ ] | | \{ \} \langle \rangle") + LEFT_RIGHT
MATRIX_ENVS = _words("pmatrix pmatrix bmatrix vmatrix matrix array")
SMALL_SPACES = _words(r"\, \, \; \: \!")
SEPARATORS = _phrases(r", \quad | , \qquad | \qquad | \quad | \; , \; | ,")
FUNCTION_NAMES = _words(r"f f g h F G V u y \phi \psi Z")
VARIABLES = _words(r"x x t y z r s k p q \tau \theta")


class Grammar:
    """Recursive formula grammar; every method appends tokens to ``out`` to stay allocation-light.

    ``depth`` grows inside fractions, scripts, roots and delimiters; at ``MAX_DEPTH`` only atoms
    remain, which bounds nesting and keeps lengths in the range real formulas have.
    """

    def __init__(self, rng: random.Random) -> None:
        self.random = rng.random
        self.choice = rng.choice
        self.randint = rng.randint

    # -- top level -------------------------------------------------------------------------

    def formula(self) -> list[str]:
        """Pick a top-level shape with roughly the mix seen in physics papers."""
        out: list[str] = []
        x = self.random()
        if x < 0.48:
            self.equation(out)
        elif x < 0.56:
            self.chain(out)
        elif x < 0.68:
            self.equation_pair(out)
        elif x < 0.80:
            self.term(out, 0)
            out.append(self.choice(BINARY_OPS))
            self.expression(out, 0, 3, signed=False)
        elif x < 0.91:
            self.matrix_definition(out)
        else:
            self.cases_definition(out)
        self.punctuation(out)
        return out

    def equation(self, out: list[str]) -> None:
        self.lhs(out)
        out.append(self.choice(RELATIONS))
        self.expression(out, 0, 4)

    def chain(self, out: list[str]) -> None:
        """``a = b = c`` and ``0 < x \\leq 1`` style chains."""
        if self.random() < 0.5:
            self.lhs(out)
            for _ in range(2):
                out.append("=")
                self.expression(out, 1, 3)
        else:
            self.expression(out, 2, 2)
            relation = self.choice(("<", r"\leq", r"\ll"))
            out.append(relation)
            self.decorated_atom(out, 2)
            out.append(self.choice((relation, r"\leq")))
            self.expression(out, 2, 2)

    def equation_pair(self, out: list[str]) -> None:
        """Two statements on one line, or an equation with its range condition."""
        self.equation(out)
        out.extend(self.choice(SEPARATORS).split())
        x = self.random()
        if x < 0.5:
            self.equation(out)
        elif x < 0.75:
            self.decorated_atom(out, 2)
            out.extend((r"\in", r"\mathbb", "{", self.choice("RCZN"), "}"))
        else:
            index = self.choice(("i", "n", "k", "j"))
            out.extend((index, "=", "1", ",", self.choice((r"\ldots", r"\dots")), ","))
            out.append(self.choice(("N", "n", "d", "M")))

    def punctuation(self, out: list[str]) -> None:
        x = self.random()
        if x < 0.12:
            out.append(self.choice((".", ",")))
        elif x < 0.16:
            out.extend((self.choice((r"\,", r"\;")), self.choice((".", ","))))

    def lhs(self, out: list[str]) -> None:
        """Left-hand sides are short: a symbol, a function value, or a derivative."""
        x = self.random()
        if x < 0.35:
            self.decorated_atom(out, 1)
        elif x < 0.6:
            self.function_call(out, 1)
        elif x < 0.7:
            self.derivative(out)
        else:
            self.expression(out, 1, 2)

    # -- expressions -----------------------------------------------------------------------

    def expression(self, out: list[str], depth: int, max_terms: int, signed: bool = True) -> None:
        """Terms joined by binary operators; shallow levels get more terms than deep ones.

        ``signed=False`` is for expressions that follow an operator, where ``+ -`` would be odd.
        """
        terms = 1
        more = MORE_TERMS_PROBABILITY[min(depth, MAX_DEPTH)]
        while terms < max_terms and self.random() < more:
            terms += 1
        if signed and self.random() < 0.1:
            out.append("-")
        self.term(out, depth)
        for _ in range(terms - 1):
            if depth:
                out.append("-" if self.random() < 0.4 else "+")
            else:
                out.append(self.choice(BINARY_OPS))
            self.term(out, depth)

    def term(self, out: list[str], depth: int) -> None:
        """A product of juxtaposed factors, optionally with a leading numeric coefficient."""
        if self.random() < 0.12:
            self.number(out)
        factors = 1 + (self.random() < 0.4) + (self.random() < 0.1)
        for index in range(factors):
            if index and self.random() < 0.04:
                out.append(self.choice(SMALL_SPACES))
            self.factor(out, depth)

    def factor(self, out: list[str], depth: int) -> None:
        if depth >= MAX_DEPTH or self.random() >= STRUCTURE_PROBABILITY[depth]:
            self.decorated_atom(out, depth)
            return
        x = self.random()
        if x < 0.2:
            self.fraction(out, depth)
        elif x < 0.3:
            self.root(out, depth)
        elif x < 0.46:
            self.delimited(out, depth)
        elif x < 0.6:
            self.function_apply(out, depth)
        elif x < 0.7 and depth <= 1:
            self.big_operator(out, depth)
        elif x < 0.8:
            self.accent(out, depth)
        elif x < 0.92:
            self.font(out, depth)
        elif x < 0.95 and depth == 0:
            self.matrix(out)
        else:
            self.function_call(out, depth + 1)

    # -- atoms and scripts -----------------------------------------------------------------

    def atom(self) -> str:
        x = self.random()
        if x < 0.53:
            return self.choice(LATIN_LOWER)
        if x < 0.7:
            return self.choice(LATIN_UPPER)
        if x < 0.93:
            return self.choice(GREEK_LOWER)
        return self.choice(GREEK_UPPER)

    def decorated_atom(self, out: list[str], depth: int) -> None:
        if self.random() < 0.05:
            out.extend(self.choice(SYMBOLS).split())
            return
        out.append(self.atom())
        self.scripts(out, depth)

    def scripts(self, out: list[str], depth: int) -> None:
        """At most one sub- and one superscript per base: a second ``^`` is a TeX error."""
        x = self.random()
        if x < 0.55 or (depth >= MAX_DEPTH and x < 0.8):
            return
        if x < 0.72:
            self.subscript(out, depth)
        elif x < 0.87:
            self.superscript(out, depth)
        elif x < 0.96:
            self.subscript(out, depth)
            self.superscript(out, depth)
        else:
            out.append("'")

    def subscript(self, out: list[str], depth: int) -> None:
        out.extend(("_", "{"))
        if depth >= MAX_DEPTH - 1 or self.random() < 0.7:
            out.append(self.choice(INDICES))
        else:
            out.extend(self.choice(SUBSCRIPTS).split())
        out.append("}")

    def superscript(self, out: list[str], depth: int) -> None:
        out.extend(("^", "{"))
        if depth >= MAX_DEPTH - 1 or self.random() < 0.9:
            out.extend(self.choice(SUPERSCRIPTS).split())
        else:
            self.expression(out, MAX_DEPTH, 2)
        out.append("}")

    def number(self, out: list[str]) -> None:
        """Digits are separate tokens in the normalized format (``3 . 1 4``)."""
        x = self.random()
        out.append(str(self.randint(1, 9)))
        if x < 0.65:
            return
        if x < 0.85:
            out.append(str(self.randint(0, 9)))
        elif x < 0.9:
            out.extend((str(self.randint(0, 9)), str(self.randint(0, 9))))
        else:
            out.append(".")
            out.extend(str(self.randint(0, 9)) for _ in range(self.randint(1, 3)))

    # -- structures ------------------------------------------------------------------------

    def fraction(self, out: list[str], depth: int) -> None:
        """im2latex often wraps fractions in an extra group (``{ \\frac ... }``); keep that."""
        wrapped = self.random() < 0.15
        if wrapped:
            out.append("{")
        out.extend((r"\frac", "{"))
        if self.random() < 0.15:
            self.number(out)
            out.extend(("}", "{"))
            self.number(out)
        else:
            self.expression(out, depth + 1, 2)
            out.extend(("}", "{"))
            self.expression(out, depth + 1, 2)
        out.append("}")
        if wrapped:
            out.append("}")

    def root(self, out: list[str], depth: int) -> None:
        out.append(r"\sqrt")
        if self.random() < 0.2:
            out.extend(("[", self.choice(("3", "n", "4", "3", "k")), "]"))
        out.append("{")
        self.expression(out, depth + 1, 3)
        out.append("}")

    def delimited(self, out: list[str], depth: int) -> None:
        """``\\left`` and ``\\right`` are emitted in the same call, so they always pair up."""
        opening, closing = self.choice(DELIMITERS)
        out.append(opening)
        self.expression(out, depth + 1, 3)
        out.append(closing)
        if self.random() < 0.3:
            self.superscript(out, depth)

    def function_apply(self, out: list[str], depth: int) -> None:
        x = self.random()
        if x < 0.35:
            out.append(self.choice(POWER_FUNCTIONS))
            if self.random() < 0.2:
                out.extend(("^", "{", "2", "}"))
        elif x < 0.45:
            out.append(r"\log")
            if self.random() < 0.3:
                out.extend(("_", "{", self.choice(("2", "1 0", "b")), "}"))
        elif x < 0.7:
            out.append(self.choice(FUNCTIONS))
        elif x < 0.85:
            out.extend((self.choice(LIMIT_FUNCTIONS), "_", "{", self.choice(INDICES), "}"))
        else:
            out.extend((r"\operatorname", "{", self.choice(OPERATOR_NAMES), "}"))
        self.argument(out, depth)

    def argument(self, out: list[str], depth: int) -> None:
        x = self.random()
        if x < 0.45:
            self.decorated_atom(out, depth + 1)
        elif x < 0.8:
            out.append("(")
            self.expression(out, depth + 1, 2)
            out.append(")")
        else:
            out.append(r"\left(")
            self.expression(out, depth + 1, 3)
            out.append(r"\right)")

    def function_call(self, out: list[str], depth: int) -> None:
        """``f ( x )``, ``g _ { i } ( x , t )``: the most common left-hand side in papers."""
        out.append(self.choice(FUNCTION_NAMES))
        if self.random() < 0.2:
            self.subscript(out, MAX_DEPTH)
        out.append("(")
        out.append(self.choice(VARIABLES))
        if self.random() < 0.35:
            out.extend((",", self.choice(VARIABLES)))
        out.append(")")

    def derivative(self, out: list[str]) -> None:
        d = self.choice(("d", "d", r"\partial", r"\mathrm { d }")).split()
        top, bottom = self.choice(FUNCTION_NAMES), self.choice(VARIABLES)
        out.extend((r"\frac", "{", *d))
        if d[0] == r"\partial" and self.random() < 0.3:
            out.extend(("^", "{", "2", "}", top, "}", "{", *d, bottom, "^", "{", "2", "}", "}"))
        else:
            out.extend((top, "}", "{", *d, bottom, "}"))

    def big_operator(self, out: list[str], depth: int) -> None:
        x = self.random()
        if x < 0.45:
            self.summation(out)
        elif x < 0.85:
            self.integral(out, depth)
            return
        else:
            out.extend((r"\lim", "_", "{", self.choice(("x", "n", "t", r"\epsilon")), r"\to"))
            out.extend((self.choice(("0", r"\infty", "a")), "}"))
        self.term(out, depth + 1)

    def summation(self, out: list[str]) -> None:
        out.append(self.choice(SUMS))
        index = self.choice(("i", "n", "k", "j", "m"))
        x = self.random()
        if x < 0.5:
            out.extend(("_", "{", index, "=", self.choice("01"), "}"))
            out.extend(("^", "{", self.choice(("N", "n", r"\infty", "M", "k")), "}"))
        elif x < 0.8:
            out.extend(("_", "{", index, "}"))
        elif x < 0.9:
            out.extend(("_", "{", index, ",", self.choice("jkl"), "}"))

    def integral(self, out: list[str], depth: int) -> None:
        """Integrals carry their differential (``\\, d x``), as written in real papers."""
        out.append(self.choice(INTEGRALS))
        x = self.random()
        if x < 0.25:
            out.extend(("_", "{", "0", "}", "^", "{", self.choice((r"\infty", "1", "T")), "}"))
        elif x < 0.45:
            out.extend(("_", "{", "a", "}", "^", "{", "b", "}"))
        elif x < 0.55:
            out.extend(("_", "{", "-", r"\infty", "}", "^", "{", r"\infty", "}"))
        elif x < 0.7:
            out.extend(("_", "{", self.choice(("M", "C", r"\Omega", r"\Sigma", "V")), "}"))
        self.term(out, depth + 1)
        if self.random() < 0.5:
            out.append(r"\,")
        variable = self.choice(("x", "t", "k", "s", "y", r"\tau"))
        y = self.random()
        if y < 0.6:
            out.extend(("d", variable))
        elif y < 0.8:
            out.extend((r"\mathrm", "{", "d", "}", variable))
        else:
            out.extend(("d", "^", "{", self.choice("234"), "}", variable))

    def accent(self, out: list[str], depth: int) -> None:
        if self.random() < 0.75:
            out.extend((self.choice(NARROW_ACCENTS), "{", self.atom(), "}"))
        else:
            out.extend((self.choice(WIDE_ACCENTS), "{"))
            self.term(out, MAX_DEPTH)
            out.append("}")
        self.scripts(out, depth + 1)

    def font(self, out: list[str], depth: int) -> None:
        """Font switches get only content that makes sense in them (``\\mathcal`` is upper-case)."""
        x = self.random()
        if x < 0.4:
            self.roman(out, depth)
            return
        if x < 0.65:
            out.extend((r"\mathbf", "{", self.choice(LATIN_LETTERS), "}"))
        elif x < 0.85:
            out.extend((r"\mathcal", "{", self.choice(LATIN_UPPER), "}"))
        else:
            out.extend((r"\mathbb", "{", self.choice("RCZNQ"), "}"))
        self.scripts(out, depth + 1)

    def roman(self, out: list[str], depth: int) -> None:
        """Upright text is Euler's e, a differential, or a word label (which takes no scripts)."""
        x = self.random()
        if x < 0.4:
            out.extend((r"\mathrm", "{", "e", "}"))
            self.superscript(out, depth)
        elif x < 0.6:
            out.extend((r"\mathrm", "{", "d", "}", self.choice(VARIABLES)))
        else:
            out.extend((r"\mathrm", "{", self.choice(ROMAN_WORDS), "}"))

    # -- environments ----------------------------------------------------------------------

    def matrix(self, out: list[str]) -> None:
        """Every row gets exactly ``cols`` cells, so ``&`` never exceeds the column spec."""
        env = self.choice(MATRIX_ENVS)
        rows, cols = self.randint(1, 3), self.randint(1, 3)
        if rows == 1 and cols == 1:
            rows = 2
        if env == "array":
            opening, closing = self.choice(LEFT_RIGHT)
            out.extend((opening, r"\begin{array}", "{", *([self.choice("clr")] * cols), "}"))
        elif env == "matrix":
            opening, closing = self.choice(LEFT_RIGHT[:3])
            out.extend((opening, r"\begin{matrix}"))
        else:
            opening = closing = ""
            out.append(f"\\begin{{{env}}}")
        self.cells(out, rows, cols)
        out.append(f"\\end{{{env}}}")
        if closing:
            out.append(closing)

    def cells(self, out: list[str], rows: int, cols: int) -> None:
        for row in range(rows):
            if row:
                out.append(r"\\")
                self.row_start(out, self.cell)
            else:
                self.cell(out)
            for _ in range(cols - 1):
                out.append("&")
                self.cell(out)

    def row_start(self, out: list[str], emit: Callable[[list[str]], None]) -> None:
        """Redraw a row that would start with ``[``.

        LaTeX takes ``\\\\ [`` as the optional skip of ``\\\\``; a non-dimension there makes TeX
        loop forever in batch mode instead of failing.
        """
        start = len(out)
        emit(out)
        while out[start] == "[":
            del out[start:]
            emit(out)

    def cell(self, out: list[str]) -> None:
        x = self.random()
        if x < 0.35:
            self.decorated_atom(out, MAX_DEPTH)
        elif x < 0.55:
            self.number(out)
        elif x < 0.65:
            out.append(self.choice("01"))
        elif x < 0.75:
            out.append("-")
            self.decorated_atom(out, MAX_DEPTH)
        else:
            self.expression(out, MAX_DEPTH, 2)

    def matrix_definition(self, out: list[str]) -> None:
        x = self.random()
        if x < 0.6:
            self.decorated_atom(out, 2)
            out.append("=")
            self.matrix(out)
        elif x < 0.8:
            self.matrix(out)
        else:
            self.matrix(out)
            self.matrix(out)
            out.append("=")
            self.matrix(out)

    def cases_definition(self, out: list[str]) -> None:
        """Piecewise definitions, via ``cases`` or the older ``\\left\\{ array \\right.`` idiom."""
        self.function_call(out, 2)
        out.append("=")
        use_cases = self.random() < 0.5
        if use_cases:
            out.append(r"\begin{cases}")
        else:
            out.extend((r"\left\{", r"\begin{array}", "{", "l", "l", "}"))
        if_word, else_word = self.choice(CONDITIONS)
        rows = self.randint(2, 3)
        for row in range(rows):
            if row:
                out.append(r"\\")
                self.row_start(out, self.case_value)
            else:
                self.case_value(out)
            out.append("&")
            if row == rows - 1 and self.random() < 0.5:
                out.append(else_word)
                continue
            if self.random() < 0.5:
                out.extend((if_word, r"\;"))
            self.condition(out)
        out.extend((r"\end{cases}",) if use_cases else (r"\end{array}", r"\right."))

    def case_value(self, out: list[str]) -> None:
        self.expression(out, 2, 2)

    def condition(self, out: list[str]) -> None:
        """A variable compared with a bound, or a membership with an actual set on the right."""
        out.append(self.choice(VARIABLES))
        if self.random() < 0.2:
            out.extend((r"\in", r"\mathbb", "{", self.choice("RZNQ"), "}"))
            return
        out.append(self.choice(("<", ">", r"\leq", r"\geq", r"\neq", "=")))
        if self.random() < 0.5:
            out.append(self.choice(("0", "1", "a", "b", r"\pi")))
        else:
            self.decorated_atom(out, MAX_DEPTH)


def generate_formulas(
    count: int, seed: int, max_tokens: int = GenerateSettings.max_tokens
) -> list[str]:
    """Generate ``count`` formulas from one ``random.Random(seed)`` stream, one after another.

    Drawing them sequentially from one stream is what makes a shorter run a prefix of a longer
    one with the same seed. Over-long draws are rejected and redrawn (from the same stream),
    which keeps the length cap without skewing short formulas.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be a non-negative int, got {count!r}")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise ValueError(f"max_tokens must be an int, got {max_tokens!r}")
    if max_tokens < MIN_FORMULA_TOKENS:
        raise ValueError(f"max_tokens must be at least {MIN_FORMULA_TOKENS}, got {max_tokens}")
    grammar = Grammar(random.Random(seed))
    return [_one_formula(grammar, max_tokens) for _ in range(count)]


def _one_formula(grammar: Grammar, max_tokens: int) -> str:
    for _ in range(MAX_ATTEMPTS):
        # Table entries may hold several tokens ("c o n s t"), so count after joining.
        text = " ".join(grammar.formula())
        if text.count(" ") < max_tokens:
            return text
    # Unreachable for any sane cap; a tiny equation keeps the contract instead of looping.
    return " ".join((grammar.atom(), "=", str(grammar.randint(0, 9))))


def write_formulas(formulas: Iterable[str], path: Path | str) -> int:
    """Write one formula per line; returns the number written so callers can log it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = list(formulas)
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(f"{line}\n" for line in lines)
    return len(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline generate", description="Generate normalized LaTeX formulas."
    )
    parser.add_argument("--out", type=Path, required=True, help="formulas file to write")
    cli.add_params_args(parser)
    args = parser.parse_args(argv)
    settings = cli.read_params(args, READS).generate
    logger = cli.setup_logging()
    formulas = generate_formulas(settings.count, settings.seed, settings.max_tokens)
    written = write_formulas(formulas, args.out)
    distinct = len(set(formulas))
    logger.info("generate: wrote %d formulas (%d distinct) to %s", written, distinct, args.out)
    return 0
