"""step0's inputs as published: gzipped lists and split folders of them, checked by digest."""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import asdict

import pytest

from pipeline import config
from pipeline.config import ConfigError, SplitRatios
from pipeline.corpus import step0

RATIOS = SplitRatios(train=0.8, validation=0.1, test=0.1)
LIST = b"x ^ { 2 }\na + b\n\nx ^ { 2 }\n"


def test_a_gzipped_list_reads_as_the_plain_one(tmp_path):
    plain, packed = tmp_path / "f.txt", tmp_path / "f.txt.gz"
    plain.write_bytes(LIST)
    packed.write_bytes(gzip.compress(LIST))
    table, report = step0.run(packed, RATIOS)
    assert table.equals(step0.run(plain, RATIOS)[0])
    assert (report.lines, report.blank, report.duplicates, report.formulas) == (4, 1, 1, 2)


def test_a_split_folder_may_mix_gzipped_and_plain_lists(tmp_path):
    (tmp_path / "train.formulas.norm.txt.gz").write_bytes(gzip.compress(b"a + b\nc + d\n"))
    (tmp_path / "val.txt").write_text("e + f\n")
    (tmp_path / "test.txt.gz").write_bytes(gzip.compress(b"g + h\n"))
    table, _ = step0.run(tmp_path, RATIOS)
    splits = dict(zip(table["formula"].to_pylist(), table["split"].to_pylist(), strict=True))
    assert splits == {"a + b": "train", "c + d": "train", "e + f": "validation", "g + h": "test"}


def test_a_file_that_is_not_gzip_is_named(tmp_path):
    bad = tmp_path / "f.txt.gz"
    bad.write_bytes(LIST)
    with pytest.raises(SystemExit, match=f"{bad}: not a readable gzip file"):
        step0.run(bad, RATIOS)


def test_the_digest_is_checked_before_anything_is_read(tmp_path):
    packed = tmp_path / "f.txt.gz"
    packed.write_bytes(gzip.compress(LIST))
    digest = hashlib.sha256(packed.read_bytes()).hexdigest()
    assert step0.run(packed, RATIOS, digest.upper())[1].formulas == 2
    wrong = "ab" * 32
    message = f"step0.sha256: {packed} has sha256 {digest}, expected {wrong}"
    with pytest.raises(SystemExit, match=message):
        step0.run(packed, RATIOS, wrong)
    with pytest.raises(SystemExit, match="checks one list file; step0.input .* is a folder"):
        step0.run(tmp_path, RATIOS, digest)


def test_the_cli_checks_the_digest_from_the_params(tmp_path):
    source = tmp_path / "f.txt"
    source.write_bytes(LIST)
    settings = {"step0": {"input": str(source), "sha256": "0" * 64, "split": asdict(RATIOS)}}
    args = ["--settings", json.dumps(settings), "--out", str(tmp_path / "o.parquet")]
    with pytest.raises(SystemExit, match="expected 0{64}"):
        step0.main(args + ["--rejected", str(tmp_path / "x.parquet")])
    assert not (tmp_path / "o.parquet").exists()


def test_a_digest_in_the_params_must_be_one():
    with pytest.raises(ConfigError, match="step0.sha256 = 'abc': must be 64 hexadecimal"):
        config.parse({"step0": {"sha256": "abc"}})
    with pytest.raises(ConfigError, match="step0.raw = 'yes': must be true or false"):
        config.parse({"step0": {"raw": "yes"}})
