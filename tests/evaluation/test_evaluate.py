"""The evaluate stage: scoring rules, and a real run on a tiny trained model."""

from __future__ import annotations

import io
import json
import shutil
import subprocess

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.config import RenderSettings
from pipeline.contracts import MANIFEST, SHARD_SCHEMA, shard_paths
from pipeline.corpus import render
from pipeline.evaluation import evaluate
from pipeline.model import bundle
from tests.conftest import run, tool_env


def test_rows_without_a_prediction_count_as_empty_predictions():
    gold = {"a": "x + y", "b": "\\frac { 1 } { 2 }"}
    summary, table = evaluate.score(gold, {"a": "x + y"})
    assert summary["samples"] == 2 and summary["missing_predictions"] == 1
    assert summary["exact_match"] == 0.5
    rows = {r["id"]: r for r in table.to_pylist()}
    assert rows["b"]["prediction"] == "" and rows["b"]["edit_distance"] == 1.0
    assert rows["a"]["bleu"] == pytest.approx(1.0)
    assert summary["edit_distance"] == pytest.approx(0.5)


def evaluate_command(work, out, *source: str, **settings) -> list[str]:
    values = {"batch_size": 8, "max_len": 40, "beam_width": 2, "heatmaps": 3} | settings
    return [
        "python",
        "-m",
        "pipeline",
        "evaluate",
        "--settings",
        json.dumps({"evaluate": values}),
        "--model",
        str(work / "model"),
        *source,
        "--metrics",
        str(out / "metrics.json"),
        "--predictions",
        str(out / "predictions.parquet"),
    ]


def test_evaluate_scores_every_test_row_greedy_beam_and_visual(tiny_shards, trained_tiny, tmp_path):
    work, _ = trained_tiny
    curves = tmp_path / "live" / "plots" / "metrics" / "train"
    curves.mkdir(parents=True)
    (curves / "loss.tsv").write_text("step\tloss\n0\t3.0\n10\t2.0\n")
    command = evaluate_command(work, tmp_path, "--shards", str(tiny_shards / "shards"))
    command += ["--report", str(tmp_path / "report"), "--curves", str(tmp_path / "live")]
    run(command + ["--length-plot", str(tmp_path / "lengths.json")], tmp_path)
    summary = json.loads((tmp_path / "metrics.json").read_text())
    manifest = json.loads((tiny_shards / "shards" / MANIFEST).read_text())
    test_rows = sum(m["rows"] for m in manifest["shards"] if m["split"] == "test")
    assert summary["samples"] == test_rows > 0
    assert summary["decoding"] == "beam2" and summary["beam_width"] == 2
    for part in (summary, summary["greedy"]):
        for key in ("bleu", "bleu_unsmoothed", "exact_match"):
            assert 0.0 <= part[key] <= 1.0
        visual = part["visual"]
        assert 0.0 <= visual["compile_rate"] <= 1.0 and 0.0 <= visual["image_match"] <= 1.0
    table = pq.read_table(tmp_path / "predictions.parquet")
    assert table.num_rows == test_rows
    for column in ("prediction", "greedy_prediction", "image_match", "image_edit_distance"):
        assert column in table.column_names
    lengths = json.loads((tmp_path / "lengths.json").read_text())
    assert sum(row["samples"] for row in lengths) == test_rows
    html = (tmp_path / "report" / "index.html").read_text()
    assert len(list((tmp_path / "report" / "heatmaps").glob("*.png"))) == 3
    assert "heatmaps/" in html and "train/loss" in html and "No learning curves" not in html


def test_evaluate_formulas_file_scores_or_records_every_line(trained_tiny, tmp_path):
    work, _ = trained_tiny
    lines = [
        "x ^ { 2 } + 1",
        "x ^ { 2 } + 1",  # duplicate
        "",
        "\\frac { a } { b }",
        "\\input { / e t c / p a s s w d }",  # unsafe
        "\\hspace { 1 c m } x",  # does not compile
    ]
    formulas = tmp_path / "mine.txt"
    formulas.write_text("\n".join(lines) + "\n")
    run(evaluate_command(work, tmp_path, "--formulas", str(formulas), visual=False), tmp_path)
    summary = json.loads((tmp_path / "metrics.json").read_text())
    external = summary["external"]
    assert external["lines"] == 6 and external["blank"] == 1 and external["duplicates"] == 1
    assert external["rejected_by_reason"] == {"tex_error": 1, "unsafe": 1}
    assert summary["samples"] == 2
    rejected = json.loads((tmp_path / "predictions.rejected.json").read_text())
    assert {row["reason"] for row in rejected} == {"tex_error", "unsafe"}


def test_evaluate_formulas_with_images_scores_the_users_pictures(trained_tiny, tmp_path):
    """Line N's picture is images/N.*: a dark 2x screenshot and a JPEG of one formula are two
    samples; a line without a picture, or with a broken one, is recorded with its reason."""
    work, _ = trained_tiny
    formula = "x ^ { 2 } + 1"
    lines = [formula, formula, "", "\\frac { a } { b }", "y"]
    (tmp_path / "mine.txt").write_text("\n".join(lines) + "\n")
    images = tmp_path / "images"
    images.mkdir()
    [page] = render.render_formulas([("a", formula)], RenderSettings(dpi=200))  # model: 100
    gray = np.asarray(Image.open(io.BytesIO(page.png)).convert("L"))
    Image.fromarray(255 - gray).save(images / "1.png")
    Image.fromarray(gray).save(images / "2.jpg", quality=80)
    (images / "5.png").write_bytes(page.png[:100])
    source = ("--formulas", str(tmp_path / "mine.txt"), "--images", str(images))
    run(evaluate_command(work, tmp_path, *source, visual=False), tmp_path)
    summary = json.loads((tmp_path / "metrics.json").read_text())
    external = summary["external"]
    assert external["lines"] == 5 and external["blank"] == 1 and external["duplicates"] == 0
    assert summary["samples"] == 2
    predictions = pq.read_table(tmp_path / "predictions.parquet").to_pydict()
    assert sorted(predictions["id"]) == ["line 1", "line 2"]
    rejected = json.loads((tmp_path / "predictions.rejected.json").read_text())
    reasons = {row["id"]: row["reason"] for row in rejected}
    assert reasons == {"line 4": "no_image", "line 5": "bad_image"}


def test_bleu_by_length_bins_every_row_once_and_skips_empty_bins():
    targets = ["a " * 5, "a " * 20, "a " * 21, "a " * 65]
    table = pa.table(
        {
            "id": ["1", "2", "3", "4"],
            "target": targets,
            "prediction": targets,
            "bleu": [1.0, 0.5, 0.25, 0.0],
            "edit_distance": [0.0, 0.1, 0.2, 0.3],
        }
    )
    rows = evaluate.bleu_by_length(table)
    assert [(r["bin"], r["samples"]) for r in rows] == [("0-20", 2), ("21-40", 1), ("61-80", 1)]
    assert rows[0]["bleu"] == pytest.approx(0.75)


def test_a_model_that_records_no_preprocessing_is_refused_before_decoding(
    tiny_shards, trained_tiny, tmp_path
):
    work, _ = trained_tiny
    shutil.copytree(work / "model", tmp_path / "model")
    record = json.loads((tmp_path / "model" / bundle.RECORD).read_text())
    del record["preprocessing"]
    (tmp_path / "model" / bundle.RECORD).write_text(json.dumps(record))
    command = evaluate_command(tmp_path, tmp_path, "--shards", str(tiny_shards / "shards"))
    with pytest.raises(SystemExit, match="records no preprocessing"):
        evaluate.main(command[4:])
    assert not (tmp_path / "metrics.json").exists()


def test_an_altered_test_shard_is_refused_by_name_without_a_traceback(
    tiny_shards, trained_tiny, tmp_path
):
    work, _ = trained_tiny
    shards = tmp_path / "shards"
    shutil.copytree(tiny_shards / "shards", shards)
    [test_shard] = shard_paths(shards, "test")
    rows = pq.read_table(test_shard).to_pylist()
    rows[0]["formula"] = "x"  # still valid Parquet, another gold formula
    pq.write_table(pa.Table.from_pylist(rows, schema=SHARD_SCHEMA), test_shard)
    command = evaluate_command(work, tmp_path, "--shards", str(shards))
    proc = subprocess.run(command, cwd=tmp_path, env=tool_env(), capture_output=True, text=True)
    assert proc.returncode == 1
    assert f"shard {test_shard} is not the file" in proc.stderr
    assert "dvc repro shards" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "metrics.json").exists()
