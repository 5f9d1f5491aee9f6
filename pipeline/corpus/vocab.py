"""Vocab stage: the token vocabulary, built from the training formulas that reach the shards.

Built from training formulas alone so that validation and test scores are honest, and only from
those that rendered and cropped (a formula that fails, e.g. one that tries ``\\input``, never
becomes a training row, so its tokens must not become vocabulary); the report
gives each split's out-of-vocabulary rate so a too-high ``min_count`` shows up at once. The
``Vocab`` class and the special tokens' fixed ids are a contract between stages
(``pipeline.contracts``).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Iterable
from itertools import compress
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from pipeline import cli
from pipeline.contracts import SPECIALS, Vocab

READS = ("vocab",)  # the params this stage reads (dvc.yaml lists the same)


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


def renderable_ids(crop_chunks: list[Path]) -> set[str]:
    """Ids of the formulas the crop stage holds an image of."""
    ids: set[str] = set()
    for chunk in crop_chunks:
        table = pq.read_table(chunk, columns=["id", "status"])
        ok = [status == "ok" for status in table["status"].to_pylist()]
        ids.update(compress(table["id"].to_pylist(), ok))
    return ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline vocab", description=__doc__)
    cli.add_params_args(parser)
    parser.add_argument("--formulas", type=Path, required=True, help="step0 Parquet table")
    parser.add_argument("--crop", type=Path, nargs="+", required=True, help="crop chunk files")
    parser.add_argument("--out", type=Path, required=True, help="vocabulary JSON")
    parser.add_argument("--report", type=Path, required=True, help="JSON report")
    args = parser.parse_args(argv)
    min_count = cli.read_params(args, READS).vocab.min_count
    formulas = pd.read_parquet(args.formulas, columns=["id", "formula", "split"])
    cropped = renderable_ids(args.crop)
    in_train = formulas["split"] == "train"
    train = formulas[in_train & formulas["id"].isin(cropped)]["formula"]
    if train.empty:
        raise SystemExit(f"vocab: {args.formulas} has no training formulas that rendered")
    vocab, counts = build_vocab(train, min_count)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    vocab.save(args.out)
    report = {
        "train_formulas": int(len(train)),
        "train_formulas_not_rendered": int(in_train.sum() - len(train)),
        "distinct_train_tokens": len(counts),
        "vocab_size": len(vocab),
        "min_count": min_count,
        "oov": oov_rates(vocab, formulas),
    }
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    cli.setup_logging().info(
        "vocab: %d training formulas in (%d more did not render), %d distinct tokens, %d kept "
        "(min_count %d), oov %s",
        len(train),
        report["train_formulas_not_rendered"],
        len(counts),
        len(vocab),
        min_count,
        {s: round(r["token_oov_rate"], 5) for s, r in report["oov"].items()},
    )
    return 0
