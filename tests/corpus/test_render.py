"""The render stage against real TeX: batching, failure isolation, safety, blank and multi-page."""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import tempfile

import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.config import RenderSettings
from pipeline.corpus import render, texrun, texsafe
from pipeline.corpus.step0 import formula_id
from tests.corpus import boxes

SETTINGS = render.RenderSettings(dpi=100, batch_size=50, timeout_s=30)


def items(formulas: list[str]) -> list[tuple[str, str]]:
    return [(formula_id(f), f) for f in formulas]


def by_id(results: list[render.Rendered]) -> dict[str, render.Rendered]:
    return {r.id: r for r in results}


def test_every_formula_renders_to_one_png(sample_formulas):
    results = render.render_formulas(items(sample_formulas), SETTINGS)
    assert [r.id for r in results] == [i for i, _ in items(sample_formulas)]
    assert all(r.status == "ok" for r in results)
    sizes = [Image.open(io.BytesIO(r.png)).size for r in results]
    assert all(w > 10 and h > 5 for w, h in sizes)


def test_dpi_scales_the_image(sample_formulas):
    low = render.render_formulas(items(sample_formulas[:1]), SETTINGS)[0]
    high = render.render_formulas(items(sample_formulas[:1]), render.RenderSettings(dpi=200))[0]
    w_low = Image.open(io.BytesIO(low.png)).width
    w_high = Image.open(io.BytesIO(high.png)).width
    assert 1.8 < w_high / w_low < 2.2


def test_a_failing_formula_in_the_middle_does_not_take_its_batch_down(sample_formulas):
    bad = r"\hspace { 1 c m } x"  # normalized units that TeX cannot parse: a real-data failure
    formulas = sample_formulas[:3] + [bad] + sample_formulas[3:]
    results = by_id(render.render_formulas(items(formulas), SETTINGS))
    assert results[formula_id(bad)].status == "failed"
    assert results[formula_id(bad)].reason == "tex_error"
    assert "Illegal unit" in results[formula_id(bad)].error
    assert sum(r.status == "ok" for r in results.values()) == len(sample_formulas)


def test_unmapped_error_is_isolated_by_bisection(sample_formulas, tmp_path):
    """Bypass the safety check: an unclosed group would otherwise swallow every later page."""
    bad = r"\mathrm { x"
    formulas = sample_formulas + [bad] + [f"y _ {{ {i} }}" for i in range(20)]
    renderer = render.BatchRenderer(SETTINGS, tmp_path)
    results = by_id(renderer.render(items(formulas)))
    assert len(results) == len(formulas)
    assert results[formula_id(bad)].status == "failed"
    assert sum(r.status == "ok" for r in results.values()) == len(formulas) - 1


def test_multi_page_and_blank_renders_are_failures(tmp_path):
    two_pages = r"x \end{displaymath} \newpage \begin{displaymath} y"
    blank = r"\,"
    good = "a + b"
    renderer = render.BatchRenderer(SETTINGS, tmp_path)
    results = by_id(renderer.render(items([good, two_pages, blank, "c"])))
    assert results[formula_id(two_pages)].reason == "multipage"
    assert results[formula_id(blank)].reason == "blank"
    assert results[formula_id(good)].status == results[formula_id("c")].status == "ok"


def test_a_hanging_formula_times_out_and_its_process_group_dies(tmp_path):
    loop = r"\def \x { \x } \x"
    settings = render.RenderSettings(dpi=100, batch_size=10, timeout_s=2)
    results = by_id(render.BatchRenderer(settings, tmp_path).render(items([loop, "a"])))
    assert results[formula_id(loop)].reason == "timeout"
    assert results[formula_id("a")].status == "ok"
    leftover = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert leftover.stdout.strip() == ""


MALICIOUS = [
    r"\input { / e t c / p a s s w d }",
    r"\input{/etc/passwd}",
    r"\write18 { t o u c h \ p w n e d }",
    r"\immediate \write 1 8 { t o u c h }",
    r"\openout 1 = p w n e d",
    r"\read 1 t o \x",
    r"\csname i n p u t \endcsname",
    r"\catcode ` \^ = 1 1",
    r"\def \x { y }",
    r"x \end{document}",
    r"^^5c input",
    r"x % comment",
    r"\typeout { @@RENDERED 0 1 }",
    r"\label { x",
]


@pytest.mark.parametrize("formula", MALICIOUS)
def test_malicious_formulas_fail_safely_with_a_reason(formula, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = render.render_formulas(items([formula, "a + b"]), SETTINGS)
    assert result[0].status == "failed" and result[0].reason == "unsafe"
    assert result[0].error  # a human-readable reason
    assert result[1].status == "ok"
    assert not list(tmp_path.iterdir())  # nothing written where we ran


def _compile_body(scratch, body: str) -> str:
    (scratch / "t.tex").write_text(texrun.PREAMBLE + body + "\n\\end{document}\n")
    assert not texrun.run_latex(scratch / "t.tex", 30).timed_out
    return (scratch / "t.log").read_text("latin-1")


def test_tex_itself_refuses_files_outside_scratch_and_shell_escape(tmp_path):
    """Second line of defence, tested without the allow-list: paranoid kpathsea, no \\write18."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    secret = tmp_path / "secret.tex"
    secret.write_text("SECRET")
    _compile_body(scratch, rf"\immediate\write18{{touch {tmp_path}/pwned}}")
    assert not (tmp_path / "pwned").exists()
    log = _compile_body(scratch, r"\immediate\openout5=../escaped.txt \immediate\write5{x}")
    assert not (tmp_path / "escaped.txt").exists()
    assert "I can't write on file" in log
    log = _compile_body(
        scratch, rf"\openin3={secret} \ifeof3 \typeout{{IN-BLOCKED}}\else\typeout{{IN-OPEN}}\fi"
    )
    assert "IN-BLOCKED" in log and "IN-OPEN" not in log
    log = _compile_body(scratch, r"\input{/etc/passwd}")
    assert "root:" not in log


def test_cli_renders_only_its_chunk(tmp_path, sample_formulas):
    import pyarrow as pa

    table = pa.table(
        {
            "id": [formula_id(f) for f in sample_formulas],
            "formula": sample_formulas,
            "split": ["train"] * len(sample_formulas),
        }
    )
    pq.write_table(table, tmp_path / "f.parquet")
    settings = json.dumps({"render": {"chunks": 2, "dpi": 100, "batch_size": 10, "timeout_s": 30}})
    seen = []
    for chunk in (0, 1):
        out = tmp_path / f"c{chunk}.parquet"
        args = [
            "--settings",
            settings,
            "--formulas",
            str(tmp_path / "f.parquet"),
            "--chunk",
            str(chunk),
            "--out",
            str(out),
        ]
        assert render.main(args) == 0
        rows = pq.read_table(out).to_pylist()
        assert all(render.chunk_of(r["id"], 2) == chunk for r in rows)
        seen += [r["id"] for r in rows]
    assert sorted(seen) == sorted(table["id"].to_pylist())


def test_pages_after_a_failing_formula_match_rendering_them_alone(sample_formulas, tmp_path):
    bad = r"\hspace { 1 c m } x"
    together = by_id(
        render.BatchRenderer(SETTINGS, tmp_path).render(
            items([sample_formulas[0], bad] + sample_formulas[1:])
        )
    )
    for item_id, formula in items(sample_formulas):
        alone = render.BatchRenderer(SETTINGS, tmp_path).render([(item_id, formula)])[0]
        assert together[item_id].png == alone.png


def test_a_formula_that_leaves_a_group_open_is_failed_and_the_rest_recompiled(tmp_path):
    leak = r"\begingroup x"  # only reachable without the allow-list
    formulas = ["a", leak, "b", "c"]
    results = by_id(render.BatchRenderer(SETTINGS, tmp_path).render(items(formulas)))
    assert results[formula_id(leak)].status == "failed"
    assert all(results[formula_id(f)].status == "ok" for f in ("a", "b", "c"))


def test_settle_stops_at_a_leak_or_a_missing_marker():
    markers = {-1: (1, 1), 0: (2, 1), 1: (3, 2), 2: (4, 2)}
    done = render.settle(3, {1: "Missing } inserted."}, markers)
    assert done.count == 2 and done.pages == {0: (1, 2)} and set(done.failed) == {1}
    done = render.settle(3, {1: "Emergency stop."}, {-1: (1, 1), 0: (2, 1)})
    assert done.count == 2 and set(done.failed) == {1}
    done = render.settle(3, {}, {-1: (1, 1), 0: (2, 1)})
    assert done.count == 1 and done.pages == {0: (1, 2)} and not done.failed
    done = render.settle(
        2, {0: "Illegal unit of measure (pt inserted)."}, {-1: (1, 1), 0: (2, 1), 1: (3, 1)}
    )
    assert done.count == 2 and done.pages == {1: (2, 3)}


def test_a_trailing_control_space_does_not_fuse_with_the_wrapper(tmp_path):
    formulas = [r"a = b \ ", r"x \ ", "c"]
    results = render.BatchRenderer(SETTINGS, tmp_path).render(items([f.strip() for f in formulas]))
    assert [r.status for r in results] == ["ok", "ok", "ok"]


def test_line_breaks_around_a_formula_never_move_errors_onto_its_neighbours():
    """The batch document puts formula i on line i: an embedded line end would shift them."""
    bad = "\\hspace { 1 c m } x\r\n"  # passes texsafe, fails in TeX (illegal unit)
    items = [("ok1", "x + 1\n"), ("bad", bad), ("ok2", "\r\ny\r"), ("ok3", "z")]
    results = {r.id: r for r in render.render_formulas(items, RenderSettings(dpi=100))}
    assert [results[i].status for i in ("ok1", "ok2", "ok3")] == ["ok", "ok", "ok"]
    assert results["bad"].reason == "tex_error"
    alone = render.render_formulas([("y", "y")], RenderSettings(dpi=100))[0]
    assert results["ok2"].png == alone.png


def test_scratch_left_by_a_killed_render_is_removed_by_the_next(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.Popen(["true"])
    gone.wait()  # a process id that no longer runs: the render that was killed
    stale = tmp_path / f"render-{gone.pid}-abc"
    stale.mkdir()
    (stale / "batch.tex").write_text("left behind")
    live = tmp_path / f"render-{os.getppid()}-def"  # a process that still runs keeps its own
    live.mkdir()
    results = render.render_formulas([("x", "x")], RenderSettings(dpi=100))
    assert results[0].status == "ok"
    assert not stale.exists() and live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name]  # its own scratch is gone


UNDRAWABLE = " ".join(["\\fbox {"] * 17 + ["x"] + ["}"] * 17)  # TeX typesets it, dvipng cannot


def test_a_page_dvipng_cannot_draw_fails_alone(sample_formulas, tmp_path):
    """Bypass texsafe (which refuses it): the rasterizer must isolate what TeX let through."""
    formulas = sample_formulas[:2] + [UNDRAWABLE] + sample_formulas[2:] + [UNDRAWABLE, "y"]
    together = by_id(render.BatchRenderer(SETTINGS, tmp_path).render(items(formulas)))
    bad = together[formula_id(UNDRAWABLE)]
    assert (bad.status, bad.reason) == ("failed", "rasterize_error")
    assert "DVI stack overflow" in bad.error
    for item_id, formula in items(sample_formulas + ["y"]):
        alone = render.BatchRenderer(SETTINGS, tmp_path).render([(item_id, formula)])[0]
        assert together[item_id].status == "ok"
        assert together[item_id].png == alone.png


def test_resume_rasterizing_pins_a_failure_only_on_the_first_page_of_a_run():
    wanted = [2, 3, 5, 6, 9]
    assert render.resume_rasterizing(wanted, 2, {2, 3, 5, 6, 9}) == (None, None)
    assert render.resume_rasterizing(wanted, 2, {2, 3}) == (None, 5)  # rerun from 5 first
    assert render.resume_rasterizing(wanted, 5, set()) == (5, 6)  # 5 failed first: pinned
    assert render.resume_rasterizing(wanted, 6, {6}) == (None, 9)
    assert render.resume_rasterizing(wanted, 9, set()) == (9, None)
    assert render.resume_rasterizing([4], 4, set()) == (4, None)


def test_fuzz_deeply_nested_boxes_render_the_same_in_a_batch_and_alone(tmp_path):
    """Random chains of every box-drawing construct, near and past the limits: whatever
    texsafe accepts renders identically in a batch and alone, and nothing is lost to dvipng."""
    rng = random.Random(3)  # a seed that found a font-loading difference, before the warm-up
    formulas = list(
        dict.fromkeys(boxes.random_nesting(rng, rng.randint(6, 40)) for _ in range(150))
    )
    accepted = [f for f in formulas if texsafe.check_formula(f) is None]
    assert len(accepted) >= 50
    settings = render.RenderSettings(dpi=40, batch_size=len(formulas), timeout_s=30)
    together = by_id(render.render_formulas(items(formulas), settings))
    renderer = render.BatchRenderer(settings, tmp_path)
    for item_id, formula in items(accepted):
        alone = renderer.render([(item_id, texsafe.normalize(formula))])[0]
        assert (together[item_id].status, together[item_id].png) == (alone.status, alone.png)
    assert not [r for r in together.values() if r.reason in ("rasterize_error", "timeout")]
