"""The evaluate stage: scoring rules, and a real run on a tiny trained model."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from pipeline import evaluate
from tests.conftest import run


def test_rows_without_a_prediction_count_as_empty_predictions():
    gold = {"a": "x + y", "b": "\\frac { 1 } { 2 }"}
    summary, table = evaluate.score(gold, {"a": "x + y"})
    assert summary["samples"] == 2 and summary["missing_predictions"] == 1
    assert summary["exact_match"] == 0.5
    rows = {r["id"]: r for r in table.to_pylist()}
    assert rows["b"]["prediction"] == "" and rows["b"]["edit_distance"] == 1.0
    assert rows["a"]["bleu"] == pytest.approx(1.0)
    assert summary["edit_distance"] == pytest.approx(0.5)


def test_evaluate_scores_every_test_row(tiny_shards, trained_tiny, tmp_path):
    work, _ = trained_tiny
    metrics, predictions = tmp_path / "metrics.json", tmp_path / "predictions.parquet"
    run(
        [
            "python",
            "-m",
            "pipeline",
            "evaluate",
            "--settings",
            '{"batch_size": 8, "max_len": 40}',
            "--model",
            str(work / "model"),
            "--shards",
            str(tiny_shards / "shards"),
            "--metrics",
            str(metrics),
            "--predictions",
            str(predictions),
        ],
        tmp_path,
    )
    summary = json.loads(metrics.read_text())
    manifest = json.loads((tiny_shards / "shards" / "manifest.json").read_text())
    test_rows = sum(m["rows"] for m in manifest["shards"] if m["split"] == "test")
    assert summary["samples"] == test_rows > 0
    for key in ("bleu", "bleu_unsmoothed", "edit_distance", "exact_match"):
        assert 0.0 <= summary[key] <= 1.0 or key == "edit_distance"
    table = pq.read_table(predictions)
    assert table.column_names == ["id", "target", "prediction", "bleu", "edit_distance"]
    assert table.num_rows == test_rows
