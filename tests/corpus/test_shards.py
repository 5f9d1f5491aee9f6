from __future__ import annotations

import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.contracts import CROPPED_SCHEMA, MANIFEST
from pipeline.corpus import shards, vocab


def crop_row(row_id, status="ok", bucket=0, reason=None):
    ok = status == "ok"
    return {
        "id": row_id,
        "png": b"png" if ok else None,
        "height": 10 if ok else None,
        "width": 40 if ok else None,
        "bucket": bucket if ok else None,
        "status": status,
        "reason": reason,
        "error": None if ok else "TeX said no",
    }


@pytest.fixture
def inputs(tmp_path):
    formulas = pa.table(
        {
            "id": ["a", "b", "c", "d", "e", "f", "g"],
            "formula": ["x + y", "x", "y ^ { 2 }", " ".join(["x"] * 20), "z", "x - y", "w"],
            "split": ["train", "train", "test", "train", "validation", "train", "test"],
        }
    )
    chunk0 = [crop_row("a"), crop_row("b"), crop_row("c", "failed", reason="tex_error")]
    chunk1 = [crop_row("d"), crop_row("e", bucket=-1), crop_row("f"), crop_row("g", bucket=1)]
    paths = []
    for i, rows in enumerate((chunk0, chunk1)):
        paths.append(tmp_path / f"chunk-{i:03d}.parquet")
        pq.write_table(pa.Table.from_pylist(rows, schema=CROPPED_SCHEMA), paths[-1])
    voc, _ = vocab.build_vocab(["x + y", "x"], 1)
    return formulas, paths, voc


def test_accounting_holds_and_every_reason_is_counted(inputs, tmp_path):
    formulas, paths, voc = inputs
    settings = shards.ShardSettings(max_tokens=10, rows_per_shard=2)
    ledger, manifest, rejected = shards.build_shards(formulas, paths, voc, settings, tmp_path / "o")
    report = ledger.as_report()
    assert report["formulas_in"] == 7
    assert report["rows_by_split"] == {"train": 3, "validation": 0, "test": 1}
    assert report["failed_by_reason"] == {"tex_error": 1}
    assert report["filtered_by_reason"] == {"image_too_large": 1, "too_many_tokens": 1}
    assert report["rows"] + report["failed"] + report["filtered"] == report["formulas_in"]
    assert {r["id"]: r["reason"] for r in rejected} == {
        "c": "tex_error",
        "d": "too_many_tokens",
        "e": "image_too_large",
    }


def test_unknown_and_listed_tokens_can_filter_a_formula_instead_of_becoming_unk(inputs, tmp_path):
    """Singh 2018's I2L-140K drops samples with a token pruned from the vocabulary (no <unk>)
    and those holding listed tokens; off by default, where <unk> stands in."""
    formulas, paths, voc = inputs  # the vocabulary holds x, +, y: "x - y" and "w" are not known
    default = shards.ShardSettings(max_tokens=10)
    ledger, _, _ = shards.build_shards(formulas, paths, voc, default, tmp_path / "unk")
    assert ledger.as_report()["rows"] == 4
    strict = shards.ShardSettings(max_tokens=10, drop_unknown=True, drop_tokens=("+",))
    ledger, _, rejected = shards.build_shards(formulas, paths, voc, strict, tmp_path / "drop")
    report = ledger.as_report()
    assert report["filtered_by_reason"] == {
        "dropped_token": 1,
        "image_too_large": 1,
        "too_many_tokens": 1,
        "unknown_token": 2,
    }
    assert report["rows"] + report["failed"] + report["filtered"] == report["formulas_in"]
    reasons = {r["id"]: r["reason"] for r in rejected}
    assert (reasons["a"], reasons["f"], reasons["g"]) == (
        "dropped_token",
        "unknown_token",
        "unknown_token",
    )


def test_shards_roll_over_and_manifest_checksums_match(inputs, tmp_path):
    formulas, paths, voc = inputs
    out = tmp_path / "o"
    out.mkdir()
    settings = shards.ShardSettings(max_tokens=10, rows_per_shard=2)
    _, manifest, _ = shards.build_shards(formulas, paths, voc, settings, out)
    assert [m["path"] for m in manifest] == [
        "train-0000.parquet",
        "train-0001.parquet",
        "test-0000.parquet",
    ]
    for entry in manifest:
        data = (out / entry["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        table = pq.read_table(out / entry["path"])
        assert table.num_rows == entry["rows"]
        assert table.schema.field("tokens").type == pa.list_(pa.int32())
    first = pq.read_table(out / "train-0000.parquet").to_pylist()[0]
    assert voc.decode(first["tokens"]) == first["formula"] == "x + y"


def test_a_formula_missing_from_the_chunks_is_an_error(inputs, tmp_path):
    formulas, paths, voc = inputs
    with pytest.raises(RuntimeError, match="never reached the crop chunks"):
        shards.build_shards(formulas, paths[:1], voc, shards.ShardSettings(), tmp_path)


def test_a_row_twice_is_an_error(inputs, tmp_path):
    formulas, paths, voc = inputs
    with pytest.raises(RuntimeError, match="more than one row"):
        shards.build_shards(formulas, paths + paths[:1], voc, shards.ShardSettings(), tmp_path)


def test_cli_writes_manifest_rejected_and_report(inputs, tmp_path):
    formulas, paths, voc = inputs
    pq.write_table(formulas, tmp_path / "f.parquet")
    voc.save(tmp_path / "v.json")
    out, report = tmp_path / "shards", tmp_path / "reports" / "data.json"
    args = [
        "--settings",
        json.dumps({"shards": {"max_tokens": 10, "rows_per_shard": 100}}),
        "--formulas",
        str(tmp_path / "f.parquet"),
        "--crop",
        *map(str, paths),
        "--vocab",
        str(tmp_path / "v.json"),
        "--out",
        str(out),
        "--report",
        str(report),
    ]
    assert shards.main(args) == 0
    assert json.loads(report.read_text())["rows"] == 4
    assert pq.read_table(out / "rejected.parquet").num_rows == 3
    assert len(json.loads((out / MANIFEST).read_text())["shards"]) == 2
