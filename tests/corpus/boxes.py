"""Formulas that nest box-drawing constructs: for the render isolation fuzz and the box benchmark.

Every allow-listed command whose (last) argument can hold another level, every alignment
environment, and the constructs that box a whole group (infix fractions, ``\\limits``,
``\\cline``), each as an (opener, closer) pair around one nesting level.
"""

from __future__ import annotations

import random

from pipeline.corpus import texsafe

_NESTING_SHAPES = {"m": "", "t": "", "om": "", "sm": "", "mm": "{ 1 } ", "omm": "{ 1 } "}
_OUTSIDE_MATH = {"^", "_", "\\sb", "\\sp", "\\label", "\\circle", "\\mod", "\\pod"}
_ENVIRONMENT_ARGUMENTS = {"array": "{c}", "subarray": "{c}", "alignedat": "{1}"}

#: Each construct as (opener, closer) around one nesting level.
CONSTRUCTS: dict[str, tuple[str, str]] = {
    "{ }": ("{", "}"),
    "^": ("x ^ {", "}"),
    "\\left": ("\\left (", "\\right )"),
    **{name: (f"{{ 1 {name} {{", "} }") for name in texsafe.INFIX_FRACTIONS},
    "\\buildrel": ("\\buildrel 1 \\over {", "}"),
    "\\limits": ("\\sum \\limits _ {", "}"),
    "\\cline": ("\\begin{array}{c} \\cline { 1 - 1 } {", "} \\end{array}"),
    "\\hline": ("\\begin{array}{|c|} \\hline {", "} \\\\ \\hline \\end{array}"),
    "\\multicolumn": ("\\begin{array}{c} \\multicolumn { 1 } { c } {", "} \\end{array}"),
    "\\raisebox": ("\\raisebox {1pt} {", "}"),
    **{
        name: (f"{name} {_NESTING_SHAPES[shape]}{{", "}")
        for name, shape in sorted(texsafe._ARGUMENTS.items())
        if shape in _NESTING_SHAPES and name not in _OUTSIDE_MATH
    },
    **{
        env: (f"\\begin{{{env}}}{_ENVIRONMENT_ARGUMENTS.get(env, '')}", f"\\end{{{env}}}")
        for env in sorted(texsafe.ALLOWED_ENVIRONMENTS - {"picture", "split"})
    },
    "picture": ("\\begin{picture}(1,1) \\put(0,0){", "} \\end{picture}"),
}

#: The constructs texsafe accepts nested two deep: what a formula may really hold.
ALLOWED = [
    name
    for name, (opener, closer) in CONSTRUCTS.items()
    if texsafe.check_formula(f"{opener} {opener} x {closer} {closer}") is None
]


def nested(construct: str, levels: int, inner: str = "x") -> str:
    """``construct`` nested ``levels`` deep around ``inner``."""
    opener, closer = CONSTRUCTS[construct]
    return " ".join([opener] * levels + [inner] + [closer] * levels)


#: Allowed constructs whose argument is text: only text may go inside them.
TEXT = [name for name in ALLOWED if texsafe._ARGUMENTS.get(name) == "t"]
MATH = [name for name in ALLOWED if name not in TEXT]


#: Math constructs that cost texsafe more than one DVI level: chains of these reach its limit.
COSTLY = [
    name
    for name in MATH
    if (texsafe.BOX_COST.get(name, 0) > 1 or name in texsafe.ALLOWED_ENVIRONMENTS)
    and texsafe.check_formula(nested(name, 4)) is None  # not one of the copying commands
]


def random_nesting(rng: random.Random, levels: int, math: list[str] = MATH) -> str:
    """A chain of ``levels`` allowed constructs drawn at random, with a little beside each:
    ``math`` constructs, then sometimes text ones (inside text, only text may follow)."""
    in_text = rng.randrange(levels // 2, levels + 1)
    chain = [rng.choice(math if level < in_text else TEXT) for level in range(levels)]
    openers = [
        CONSTRUCTS[name][0]
        + rng.choice(["", " a +", " \\frac { 1 } { 2 } +"][: 1 + 2 * (name in MATH)])
        for name in chain
    ]
    closers = [CONSTRUCTS[name][1] for name in reversed(chain)]
    return " ".join(openers + ["x"] + closers)
