from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import contracts
from pipeline.contracts import CROPPED_SCHEMA
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


def crop_chunk(path, statuses: dict[str, str]) -> None:
    """A crop chunk holding only what vocab reads of it: ids and their crop status."""
    rows = [
        {"id": i, "status": status, "reason": None if status == "ok" else "tex_error"}
        for i, status in statuses.items()
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=CROPPED_SCHEMA), path)


def run_vocab(tmp_path, frame: pd.DataFrame, statuses: dict[str, str]) -> contracts.Vocab:
    frame.to_parquet(tmp_path / "f.parquet")
    crop_chunk(tmp_path / "c.parquet", statuses)
    args = [
        "--settings",
        '{"vocab": {"min_count": 1}}',
        "--formulas",
        str(tmp_path / "f.parquet"),
        "--crop",
        str(tmp_path / "c.parquet"),
        "--out",
        str(tmp_path / "v.json"),
        "--report",
        str(tmp_path / "r.json"),
    ]
    assert vocab.main(args) == 0
    return contracts.Vocab.load(tmp_path / "v.json")


def test_built_from_training_split_only(tmp_path):
    frame = pd.DataFrame(
        {"id": ["1", "2"], "formula": ["a b", "secret"], "split": ["train", "test"]}
    )
    voc = run_vocab(tmp_path, frame, {"1": "ok", "2": "ok"})
    assert "secret" not in voc.index and "a" in voc.index
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["oov"]["test"]["formula_oov_rate"] == 1.0


def test_formulas_that_never_rendered_add_no_tokens(tmp_path):
    """A training formula that fails to render never becomes a shard row: not vocabulary."""
    frame = pd.DataFrame(
        {
            "id": ["1", "2", "3"],
            "formula": ["a b", "\\input { / e t c / p a s s w d }", "\\hspace { 1 c m } b"],
            "split": ["train", "train", "train"],
        }
    )
    voc = run_vocab(tmp_path, frame, {"1": "ok", "2": "failed", "3": "failed"})
    assert voc.tokens[4:] == ["a", "b"]
    report = json.loads((tmp_path / "r.json").read_text())
    assert (report["train_formulas"], report["train_formulas_not_rendered"]) == (1, 2)


def test_malformed_vocab_is_refused():
    with pytest.raises(ValueError):
        contracts.Vocab(["a", "b"])
