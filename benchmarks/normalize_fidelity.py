"""How faithfully the normalizer reproduces the im2latex-100k token format.

Normalizing a list that is already normalized must give it back unchanged. This runs every
formula of ../shared/data/*.formulas.norm.txt through ``python -m pipeline normalize``'s code
(one Node process per list) and reports the share of lines that come back identical, and the
differences by category, each with its count and one example.

    python benchmarks/normalize_fidelity.py [LIST ...]
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.contracts import normalize_formula  # noqa: E402
from pipeline.corpus import lists, normalize  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"

# Differences the format's rules make on purpose (README, Normalizing raw LaTeX), by the tokens
# of the original they touch.
DELIBERATE = {
    "\\sp": "\\sp and \\sb written as ^ { } and _ { } (deliberate)",
    "\\sb": "\\sp and \\sb written as ^ { } and _ { } (deliberate)",
    "\\label": "\\label and its argument removed (deliberate)",
    "[object Object]": "im2markup's own artifact '[object Object]' in the list",
}


def category(original: str, outcome: normalize.Normalized) -> str:
    """A name for how one line came back different."""
    if outcome.tokens is None:
        reason = re.sub(r" \(at character \d+\)", "", outcome.message or "")
        return f"refused by KaTeX: {reason[:70]}"
    for needle, name in DELIBERATE.items():
        if needle in original.split() or needle in original:
            return name
    a, b = original.split(), outcome.tokens.split()
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            return f"other: '{' '.join(a[i1:i2])[:30]}' became '{' '.join(b[j1:j2])[:30]}'"
    return "other"


def around_difference(original: str, outcome: normalize.Normalized) -> tuple[str, str]:
    """Both sides a few tokens either side of their first difference."""
    if outcome.tokens is None:
        return original, outcome.message or ""
    a, b = original.split(), outcome.tokens.split()
    ops = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    _, i1, i2, j1, j2 = next(op for op in ops if op[0] != "equal")
    return " ".join(a[max(i1 - 6, 0) : i2 + 6]), " ".join(b[max(j1 - 6, 0) : j2 + 6])


def measure(path: Path) -> tuple[int, int, Counter, dict[str, tuple[str, str]], float]:
    formulas = [normalize_formula(line) for line in lists.read_lines(path)]
    formulas = [f for f in formulas if f]
    start = time.perf_counter()
    outcomes = normalize.normalize_formulas(formulas)
    seconds = time.perf_counter() - start
    counts: Counter = Counter()
    examples: dict[str, tuple[str, str]] = {}
    for original, outcome in zip(formulas, outcomes, strict=True):
        if outcome.tokens == original:
            continue
        name = category(original, outcome)
        counts[name] += 1
        examples.setdefault(name, around_difference(original, outcome))
    return len(formulas), len(formulas) - sum(counts.values()), counts, examples, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lists", nargs="*", type=Path, help="default: ../shared/data/*")
    args = parser.parse_args()
    paths = args.lists or sorted(SHARED.glob("*.formulas.norm.txt"))
    for path in paths:
        total, same, counts, examples, seconds = measure(path)
        print(f"normalize fidelity: {path.name}, {total:,} formulas, normalized in {seconds:.1f} s")
        print(f"identical lines: {same:,} of {total:,} ({same / total:.2%})")
        print(f"different: {total - same:,}, by category (count, then one example):")
        for name, count in counts.most_common():
            before, after = examples[name]
            print(f"  {count:5d}  {name}")
            print(f"         list:       {before[:110]}")
            print(f"         normalized: {after[:110]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
