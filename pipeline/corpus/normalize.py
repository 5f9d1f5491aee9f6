"""normalize: raw LaTeX formulas, one per line -> the token format step0 reads.

The format is the im2latex-100k lists' (Deng et al.'s KaTeX-based normalizer): tokens separated
by single spaces, ``{a\\over b}`` as ``{ \\frac { a } { b } }``, ``x_1^2`` as
``x _ { 1 } ^ { 2 }``, comments, labels and ``$`` removed (README, Normalizing raw LaTeX).
KaTeX's parser (npm, pinned by ``katex_walker/package-lock.json``, installed by ``make deps``)
reads each formula and the project's walker (``katex_walker/walker.js``) writes its tokens: one
Node process for the whole list.

The output stays line-aligned with the input, so line N of one is line N of the other: a
formula that cannot be normalized leaves an empty line (step0 counts it as blank) and a record
of its line, the formula and the reason (KaTeX's message) in the rejects file beside the output.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline import cli
from pipeline.corpus.lists import check_sha256, line_problem, read_lines

READS = ("step0.raw", "step0.sha256")  # the params the stage reads (dvc.yaml lists the same)
WALKER_DIR = Path(__file__).with_name("katex_walker")  # walker.js and the pinned package files
WALKER = WALKER_DIR / "walker.js"
# `make deps` runs `npm ci` on a copy of WALKER_DIR's package files here, outside the package, so
# KaTeX's own files never mix with the project's code.
KATEX = Path(__file__).resolve().parents[2] / ".node" / "node_modules" / "katex"
REJECTS_SUFFIX = ".rejects.jsonl"
# Node takes about a second to start and parse KaTeX; then thousands of formulas a second.
TIMEOUT_S = 60.0
TIMEOUT_PER_FORMULA_S = 0.01


@dataclass(frozen=True)
class Normalized:
    """One formula's outcome: its tokens, or why it has none (``reason`` and ``message``)."""

    tokens: str | None
    reason: str | None = None
    message: str | None = None


@dataclass
class NormalizeReport:
    """Counts in and out: every line is normalized, blank (nothing to normalize) or rejected."""

    lines: int = 0
    normalized: int = 0
    blank: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)

    def check(self) -> None:
        out = self.normalized + self.blank + self.rejected
        if out != self.lines:
            raise RuntimeError(f"normalize accounting broken: {self.lines} lines in, {out} out")


def rejects_path(out_file: Path) -> Path:
    """Where the rejects of ``out_file`` go unless told otherwise: beside it."""
    return out_file.with_name(out_file.name + REJECTS_SUFFIX)


def node_command() -> list[str]:
    """How to run the walker; a clear error when Node or KaTeX is missing."""
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        raise SystemExit("normalize: Node.js not found; `make deps` installs it (Debian: nodejs)")
    if not KATEX.is_dir():
        raise SystemExit(
            f"normalize: KaTeX is not installed at {KATEX}; `make deps` installs it (npm ci, "
            f"the version {WALKER_DIR.name}/package-lock.json pins)"
        )
    return [node, str(WALKER), str(KATEX)]


def normalize_formulas(formulas: list[str]) -> list[Normalized]:
    """Normalize every formula with one Node process; the outcomes in the same order."""
    outcomes: list[Normalized | None] = [None] * len(formulas)
    sent: list[int] = []
    for i, formula in enumerate(formulas):
        problem = _text_problem(formula)
        if problem is not None:
            outcomes[i] = problem
        elif formula.strip():
            sent.append(i)
        else:
            outcomes[i] = Normalized(tokens="")
    answers = _run_walker([formulas[i] for i in sent])
    for i, answer in zip(sent, answers, strict=True):
        outcomes[i] = _outcome(answer)
    return outcomes  # type: ignore[return-value]  # every slot is filled above


def _text_problem(formula: str) -> Normalized | None:
    """Bytes that are not UTF-8 never reach KaTeX (JSON cannot carry them)."""
    problem = line_problem(formula)
    if problem is not None and problem[0] == "not_utf8":
        return Normalized(None, "not_utf8", problem[1])
    return None


def _run_walker(formulas: list[str]) -> list[dict]:
    if not formulas:
        return []
    payload = "".join(json.dumps(f) + "\n" for f in formulas)
    proc = subprocess.run(
        node_command(),
        input=payload,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=TIMEOUT_S + TIMEOUT_PER_FORMULA_S * len(formulas),
    )
    answers = [json.loads(line) for line in proc.stdout.splitlines()]
    if proc.returncode != 0 or len(answers) != len(formulas):
        raise RuntimeError(
            f"normalize: the walker answered {len(answers)} of {len(formulas)} formulas "
            f"(exit {proc.returncode}): {proc.stderr[-2000:]}"
        )
    return answers


def _outcome(answer: dict) -> Normalized:
    if "error" in answer:
        return Normalized(None, "walker" if answer.get("internal") else "katex", answer["error"])
    tokens = answer["tokens"]
    problem = line_problem(tokens)
    if problem is not None:  # e.g. a Greek letter typed as Unicode: step0 would refuse it
        return Normalized(None, problem[0], f"the tokens have a {problem[1]}")
    return Normalized(tokens)


def normalize_file(raw_file: Path, out_file: Path, rejects_file: Path) -> NormalizeReport:
    """Write ``out_file`` line-aligned with ``raw_file`` and the rejects beside it."""
    formulas = read_lines(raw_file)
    outcomes = normalize_formulas(formulas)
    report = NormalizeReport(lines=len(formulas))
    rejects = []
    for number, (formula, outcome) in enumerate(zip(formulas, outcomes, strict=True), start=1):
        if outcome.tokens is None:
            rejects.append(
                {
                    "line": number,
                    "formula": formula,
                    "reason": outcome.reason,
                    "message": outcome.message,
                }
            )
        elif outcome.tokens:
            report.normalized += 1
        else:
            report.blank += 1
    report.rejected = len(rejects)
    report.rejected_by_reason = dict(sorted(Counter(r["reason"] for r in rejects).items()))
    report.check()
    write_outputs(out_file, rejects_file, [o.tokens or "" for o in outcomes], rejects)
    return report


def write_outputs(out_file: Path, rejects_file: Path, lines: list[str], rejects: list[dict]):
    out_file.parent.mkdir(parents=True, exist_ok=True)
    rejects_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text("".join(line + "\n" for line in lines))
    rejects_file.write_text("".join(json.dumps(r) + "\n" for r in rejects))  # ASCII JSON


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline normalize", description=__doc__)
    parser.add_argument("raw_file", type=Path, help="raw LaTeX, one formula per line (or .gz)")
    parser.add_argument("out_file", type=Path, help="the normalized list to write")
    parser.add_argument(
        "--rejects", type=Path, help=f"JSON lines of rejected formulas (OUT_FILE{REJECTS_SUFFIX})"
    )
    parser.add_argument("--report", type=Path, help="JSON file for the counts")
    parser.add_argument(
        "--settings",
        help="as the normalize stage passes them: step0.raw (false: nothing to normalize, "
        "OUT_FILE is written empty) and step0.sha256 (RAW_FILE's digest, checked first)",
    )
    args = parser.parse_args(argv)
    log = cli.setup_logging()
    rejects_file = args.rejects or rejects_path(args.out_file)
    settings = cli.read_params(args, READS).step0 if args.settings is not None else None
    if settings is not None and not settings.raw:
        write_outputs(args.out_file, rejects_file, [], [])
        report = NormalizeReport()
        log.info("normalize: step0.raw is false, so step0 reads step0.input as it is: 0 lines")
    else:
        check_sha256(args.raw_file, settings.sha256 if settings else None)
        report = normalize_file(args.raw_file, args.out_file, rejects_file)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(asdict(report), indent=2) + "\n")
    log.info(
        "normalize: %d lines in, %d normalized, %d blank, %d rejected %s (in %s)",
        report.lines,
        report.normalized,
        report.blank,
        report.rejected,
        report.rejected_by_reason,
        rejects_file,
    )
    return 0
