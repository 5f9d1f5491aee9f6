from __future__ import annotations

import json
from dataclasses import asdict

import pyarrow.parquet as pq
import pytest

from pipeline.config import SplitRatios
from pipeline.corpus import step0

RATIOS = SplitRatios(train=0.8, validation=0.1, test=0.1)


def test_ids_are_stable_and_content_derived():
    assert step0.formula_id("x ^ { 2 }") == step0.formula_id("x  ^ { 2 }".replace("  ", " "))
    assert step0.formula_id("x ^ { 2 }") != step0.formula_id("x ^ { 3 }")
    assert len(step0.formula_id("a")) == 16


def test_duplicates_and_blank_lines_are_counted_not_kept(sample_formulas):
    lines = sample_formulas + [
        sample_formulas[0],
        "   ",
        "",
        "x  ^ {  2 } +  y ^ { 2 } = z ^ { 2 }",
    ]
    table, report = step0.build_table(lines, RATIOS)
    assert table.num_rows == len(sample_formulas)
    assert report.lines == len(lines)
    assert report.blank == 2
    assert report.duplicates == 2  # the exact repeat and the one differing only in spacing
    assert report.lines == report.formulas + report.blank + report.duplicates


def test_hash_split_is_deterministic_and_stable_when_the_list_grows():
    base = [f"x _ {{ {i} }}" for i in range(2000)]
    table, _ = step0.build_table(base, RATIOS)
    grown, _ = step0.build_table(base + [f"y _ {{ {i} }}" for i in range(500)], RATIOS)
    before = dict(zip(table["id"].to_pylist(), table["split"].to_pylist(), strict=True))
    after = dict(zip(grown["id"].to_pylist(), grown["split"].to_pylist(), strict=True))
    assert all(after[i] == s for i, s in before.items())
    shares = {s: list(before.values()).count(s) / len(before) for s in step0.SPLITS}
    assert shares["train"] == pytest.approx(0.8, abs=0.04)
    assert shares["test"] == pytest.approx(0.1, abs=0.03)


def test_explicit_split_lists_keep_a_shared_formula_in_test(tmp_path):
    (tmp_path / "train.formulas.norm.txt").write_text("a + b\nc + d\nshared\n")
    (tmp_path / "val.formulas.norm.txt").write_text("e + f\n")
    (tmp_path / "test.formulas.norm.txt").write_text("shared\ng + h\n")
    table, report = step0.run(tmp_path, RATIOS)
    splits = dict(zip(table["formula"].to_pylist(), table["split"].to_pylist(), strict=True))
    assert splits == {
        "a + b": "train",
        "c + d": "train",
        "e + f": "validation",
        "shared": "test",
        "g + h": "test",
    }
    assert report.cross_split_duplicates == 1


def test_directory_without_a_split_list_is_a_clear_error(tmp_path):
    (tmp_path / "train.txt").write_text("a\n")
    with pytest.raises(SystemExit, match="no validation list"):
        step0.run(tmp_path, RATIOS)


def test_cli_writes_table_rejected_lines_and_report(tmp_path, sample_formulas):
    source = tmp_path / "f.txt"
    source.write_bytes(("\n".join(sample_formulas) + "\nx\u00a0+ 1\n").encode())
    settings = {"step0": {"input": str(source), "split": asdict(RATIOS)}}
    out, rejected, report = tmp_path / "o.parquet", tmp_path / "x.parquet", tmp_path / "r.json"
    args = ["--settings", json.dumps(settings), "--out", str(out), "--rejected", str(rejected)]
    assert step0.main(args + ["--report", str(report)]) == 0
    assert pq.read_table(out).column_names == ["id", "formula", "split"]
    counts = json.loads(report.read_text())
    assert counts["formulas"] == len(sample_formulas)
    assert (counts["rejected"], counts["rejected_by_reason"]) == (1, {"non_ascii": 1})
    [row] = pq.read_table(rejected).to_pylist()
    assert row == {
        "list": None,
        "line": len(sample_formulas) + 1,
        "reason": "non_ascii",
        "detail": "non-ASCII character U+00A0 at column 2",
    }


def test_only_line_feeds_end_lines_and_other_characters_are_rejected_with_their_line(tmp_path):
    """U+2028, form feed, U+0085 and U+001C would split one line in two under splitlines(),
    and a non-breaking space would silently become a space; bad UTF-8 ends no more than its
    own line."""
    lines = [
        b"a + b",
        "c \u2028 d".encode(),
        b"e \x0c f",
        "g \u0085 h".encode(),
        b"i \x1c j",
        "k\u00a0l".encode(),
        b"m \xff n",
        b"o + p\r",
        b"",
    ]
    source = tmp_path / "f.txt"
    source.write_bytes(b"\n".join(lines))
    table, report = step0.run(source, RATIOS)
    assert sorted(table["formula"].to_pylist()) == ["a + b", "o + p"]
    assert report.lines == 8 and report.blank == 0 and report.rejected == 6
    reasons = {row["line"]: row["reason"] for row in report.rejections}
    assert reasons == {
        2: "non_ascii",
        3: "control_character",
        4: "non_ascii",
        5: "control_character",
        6: "non_ascii",
        7: "not_utf8",
    }
    assert report.rejections[-1]["detail"] == "byte 0xff at column 3 is not UTF-8 text"
