from __future__ import annotations

import json

import pandas as pd
import pytest

from pipeline import contracts
from pipeline.corpus import vocab


def test_specials_first_and_min_count_applied():
    voc, counts = vocab.build_vocab(["a b a", "a c"], min_count=2)
    assert voc.tokens[:4] == list(contracts.SPECIALS)
    assert voc.tokens[4:] == ["a"]
    assert counts["b"] == 1


def test_encode_decode_round_trip_and_unknown():
    voc, _ = vocab.build_vocab(["\\frac { a } { b }"], min_count=1)
    ids = voc.encode("\\frac { a } { z }")
    assert ids[-2] == voc.index[contracts.UNK]
    assert voc.decode(voc.encode("\\frac { a } { b }")) == "\\frac { a } { b }"
    end = voc.index[contracts.END]
    assert voc.decode([voc.index["a"], end, voc.index["b"]]) == "a"


def test_oov_rates_per_split():
    formulas = pd.DataFrame(
        {
            "formula": ["a b", "a", "a z", "y y"],
            "split": ["train", "train", "validation", "test"],
        }
    )
    voc, _ = vocab.build_vocab(formulas[formulas.split == "train"].formula, 1)
    rates = vocab.oov_rates(voc, formulas)
    assert rates["train"]["token_oov_rate"] == 0
    assert rates["validation"] == {"token_oov_rate": 0.5, "formula_oov_rate": 1.0}
    assert rates["test"]["token_oov_rate"] == 1.0


def test_built_from_training_split_only(tmp_path):
    frame = pd.DataFrame(
        {"id": ["1", "2"], "formula": ["a b", "secret"], "split": ["train", "test"]}
    )
    frame.to_parquet(tmp_path / "f.parquet")
    args = [
        "--settings",
        '{"vocab": {"min_count": 1}}',
        "--formulas",
        str(tmp_path / "f.parquet"),
        "--out",
        str(tmp_path / "v.json"),
        "--report",
        str(tmp_path / "r.json"),
    ]
    assert vocab.main(args) == 0
    voc = contracts.Vocab.load(tmp_path / "v.json")
    assert "secret" not in voc.index and "a" in voc.index
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["oov"]["test"]["formula_oov_rate"] == 1.0


def test_malformed_vocab_is_refused():
    with pytest.raises(ValueError):
        contracts.Vocab(["a", "b"])
