"""Vocab stage: the token vocabulary, built from the training split only.

Built from training formulas alone so that validation and test scores are honest; the report
gives each split's out-of-vocabulary rate so a too-high ``min_count`` shows up at once.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from pipeline import cli

PAD, START, END, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIALS = (PAD, START, END, UNK)  # fixed ids 0..3: padding must be 0 for masking


class Vocab:
    """Token <-> id mapping with the special tokens at fixed ids."""

    def __init__(self, tokens: Sequence[str]) -> None:
        if tuple(tokens[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"vocabulary must start with {SPECIALS}")
        self.tokens = list(tokens)
        self.index = {t: i for i, t in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise ValueError("vocabulary has duplicate tokens")

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, formula: str) -> list[int]:
        unk = self.index[UNK]
        return [self.index.get(t, unk) for t in formula.split()]

    def decode(self, ids: Iterable[int]) -> str:
        """Tokens up to the first end token, specials dropped: the normalized formula string."""
        out = []
        for i in ids:
            token = self.tokens[i] if 0 <= i < len(self.tokens) else UNK
            if token == END:
                break
            if token not in (PAD, START):
                out.append(token)
        return " ".join(out)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"tokens": self.tokens}, indent=0) + "\n")

    @classmethod
    def load(cls, path: Path) -> Vocab:
        return cls(json.loads(Path(path).read_text())["tokens"])


def build_vocab(train_formulas: Iterable[str], min_count: int) -> tuple[Vocab, Counter]:
    """Tokens seen at least ``min_count`` times, most frequent first (ties alphabetical)."""
    counts = Counter(t for f in train_formulas for t in f.split())
    kept = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
    return Vocab(list(SPECIALS) + [t for t in kept if t not in SPECIALS]), counts


def oov_rates(vocab: Vocab, formulas: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per split: share of tokens, and of formulas with at least one token, not in the vocab."""
    rates = {}
    for split, group in formulas.groupby("split", sort=True):
        tokens = oov = formulas_with_oov = 0
        for formula in group["formula"]:
            missing = sum(t not in vocab.index for t in formula.split())
            tokens += len(formula.split())
            oov += missing
            formulas_with_oov += missing > 0
        rates[str(split)] = {
            "token_oov_rate": oov / tokens if tokens else 0.0,
            "formula_oov_rate": formulas_with_oov / len(group) if len(group) else 0.0,
        }
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline vocab", description=__doc__)
    cli.add_settings_args(parser)
    parser.add_argument("--formulas", type=Path, required=True, help="step0 Parquet table")
    parser.add_argument("--out", type=Path, required=True, help="vocabulary JSON")
    parser.add_argument("--report", type=Path, required=True, help="JSON report")
    args = parser.parse_args(argv)
    min_count = int(cli.load_settings(args, "vocab").get("min_count", 1))
    if min_count < 1:
        raise SystemExit(f"vocab: min_count must be at least 1, got {min_count}")
    formulas = pd.read_parquet(args.formulas, columns=["formula", "split"])
    train = formulas[formulas["split"] == "train"]["formula"]
    if train.empty:
        raise SystemExit(f"vocab: {args.formulas} has no training formulas")
    vocab, counts = build_vocab(train, min_count)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    vocab.save(args.out)
    report = {
        "train_formulas": int(len(train)),
        "distinct_train_tokens": len(counts),
        "vocab_size": len(vocab),
        "min_count": min_count,
        "oov": oov_rates(vocab, formulas),
    }
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    cli.setup_logging().info(
        "vocab: %d training formulas in, %d distinct tokens, %d kept (min_count %d), oov %s",
        len(train),
        len(counts),
        len(vocab),
        min_count,
        {s: round(r["token_oov_rate"], 5) for s, r in report["oov"].items()},
    )
    return 0
