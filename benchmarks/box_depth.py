"""How deep each allow-listed construct nests boxes in the DVI file, and where dvipng gives up.

dvipng keeps a fixed stack of DVI positions and stops with "DVI stack overflow" once a page
nests more than it holds; TeX itself writes such pages without complaint. Every construct that
builds boxes costs a few stack levels per nesting level, and texsafe refuses a formula whose
boxes would nest past dvipng's limit (``texsafe.BOX_COST``, ``texsafe.MAX_BOX_DEPTH``). This
measures, by compiling each construct nested 2 and 6 deep alone, what one level costs (the
postamble of a DVI file records its deepest stack), compares it with the table texsafe uses,
and finds dvipng's limit by bisection on nested ``\\fbox``.

    python benchmarks/box_depth.py
"""

from __future__ import annotations

import re
import struct
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.corpus import texrun, texsafe  # noqa: E402
from tests.corpus.boxes import CONSTRUCTS, nested  # noqa: E402


def stack_depth(dvi: Path) -> int:
    """The deepest DVI stack of any page, from the postamble (``post`` ... ``s[2]``)."""
    data = dvi.read_bytes()
    end = len(data) - 1
    while data[end] == 223:  # the padding after post_post
        end -= 1
    post = struct.unpack(">I", data[end - 4 : end])[0]
    return struct.unpack(">H", data[post + 25 : post + 27])[0]


def compile_alone(formula: str, folder: Path) -> tuple[int | None, bool]:
    """(deepest stack, whether dvipng drew it) for one formula on its own page."""
    for stale in folder.iterdir():
        stale.unlink()
    tex = folder / "one.tex"
    tex.write_text(texrun.PREAMBLE + texrun.display_math(formula) + "\n\\end{document}\n")
    texrun.run_latex(tex, 30)
    dvi = folder / "one.dvi"
    if not dvi.exists() or "!" in (folder / "one.log").read_text("latin-1"):
        return None, False
    texrun.run_dvipng(dvi, 100, 30, 1, 1)
    return stack_depth(dvi), (folder / "page1.png").exists()


def dvipng_limit(folder: Path) -> int:
    """The deepest stack dvipng draws, by bisection on nested \\fbox (6 levels each)."""
    low, high = 1, 40  # \fbox nested `low` deep draws, `high` deep does not
    while high - low > 1:
        middle = (low + high) // 2
        depth, drawn = compile_alone(nested("\\fbox", middle), folder)
        low, high = (middle, high) if drawn else (low, middle)
    return compile_alone(nested("\\fbox", low), folder)[0] or 0


def charge(construct: str) -> int:
    """What texsafe charges one level of ``construct``: the costs of the commands and
    environments in its opener, or one (what MAX_NESTING allows each group)."""
    names = re.findall(r"\\[A-Za-z]+|(?<=\\begin\{)\w+", CONSTRUCTS[construct][0])
    return sum(texsafe.BOX_COST.get(name, 0) for name in names) or 1


def main() -> int:
    worst = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        limit = dvipng_limit(folder)
        print(f"dvipng draws pages whose DVI stack is at most {limit} deep")
        print(f"texsafe refuses boxes nested past MAX_BOX_DEPTH = {texsafe.MAX_BOX_DEPTH}\n")
        print(f"{'construct':<16} {'per level':>9} {'texsafe':>8}  verdict")
        for construct in CONSTRUCTS:
            two, _ = compile_alone(nested(construct, 2), folder)
            six, _ = compile_alone(nested(construct, 6), folder)
            if two is None or six is None:
                print(f"{construct:<16} {'-':>9} {'-':>8}  TeX errors when nested")
                continue
            per_level = (six - two) / 4
            charged = charge(construct)
            verdict = "ok" if charged >= per_level else "UNDERCHARGED"
            worst.append(verdict)
            print(f"{construct:<16} {per_level:>9.2f} {charged:>8}  {verdict}")
    under = worst.count("UNDERCHARGED")
    print(f"\n{len(worst)} constructs measured, {under} charged less than they cost")
    return 1 if under else 0


if __name__ == "__main__":
    raise SystemExit(main())
