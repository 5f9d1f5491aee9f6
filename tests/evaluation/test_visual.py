"""Visual match: real renders through the render and crop stages; hand-built images for rules."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from pipeline.corpus import crop, render
from pipeline.evaluation import visual
from pipeline.evaluation.visual import DENG_TOLERANCE, compare_images

RENDER = render.RenderSettings(dpi=100, batch_size=50, timeout_s=30)
CROP = crop.CropSettings()

# id -> (gold, prediction); None: no prediction at all
CASES = {
    "sup": ("x ^ { 2 }", "x ^ 2"),
    "brace": ("{ a } + b", "a + b"),
    "different": ("x ^ { 2 }", "x ^ { 3 }"),
    "tex_error": ("x + y", r"\hspace { 1 c m } x"),  # passes the checker, TeX refuses the unit
    "unclosed": (r"\frac { a } { b }", r"\frac { a"),
    "undefined": ("x", r"\undefinedmacro x"),
    "unsafe": ("y", r"\input { /etc/passwd }"),
    "empty": ("z", ""),
    "missing": ("w", None),
    "bad_gold": (r"\hspace { 1 c m } q", "q"),
}
GOLD = {i: g for i, (g, _) in CASES.items()}
PREDICTED = {i: p for i, (_, p) in CASES.items() if p is not None} | {"stray": "x"}
FAILED_PREDICTIONS = {
    "tex_error": "tex_error: ",
    "unclosed": "unsafe: ",
    "undefined": "unsafe: ",
    "unsafe": "unsafe: ",
    "empty": "empty",
    "missing": "missing",
}


@pytest.fixture(scope="module")
def matched() -> tuple[list[dict], dict]:
    return visual.visual_match(GOLD, PREDICTED, RENDER, CROP)


def by_id(rows: list[dict]) -> dict[str, dict]:
    return {row["id"]: row for row in rows}


def test_every_gold_id_comes_out_once_in_gold_order(matched):
    rows, _ = matched
    assert [row["id"] for row in rows] == list(GOLD)


@pytest.mark.parametrize("item_id", ["sup", "brace"])
def test_different_tokens_that_render_alike_are_a_visual_match(matched, item_id):
    gold, prediction = CASES[item_id]
    assert gold.split() != prediction.split()
    row = by_id(matched[0])[item_id]
    assert row["compiled"] and row["render_error"] is None
    assert row["image_match"] and row["image_match_ws"]
    assert row["image_edit_distance"] == 0.0
    assert row["predicted_png"] == row["gold_png"]


def test_different_formulas_do_not_match(matched):
    row = by_id(matched[0])["different"]
    assert row["compiled"]
    assert not row["image_match"] and not row["image_match_ws"]
    assert 0.0 < row["image_edit_distance"] < 1.0


@pytest.mark.parametrize("item_id", sorted(FAILED_PREDICTIONS))
def test_a_prediction_without_a_picture_is_a_full_mismatch(matched, item_id):
    row = by_id(matched[0])[item_id]
    assert not row["compiled"] and row["predicted_png"] is None
    assert row["render_error"].startswith(FAILED_PREDICTIONS[item_id])
    assert (row["image_match"], row["image_match_ws"], row["image_edit_distance"]) == (
        False,
        False,
        1.0,
    )
    assert row["gold_png"] is not None


def test_gold_that_fails_is_kept_as_a_row_but_left_out_of_the_summary(matched):
    rows, summary = matched
    row = by_id(rows)["bad_gold"]
    assert row["render_error"].startswith("gold tex_error: ")
    assert row["compiled"] and row["gold_png"] is None
    assert row["image_match"] is None and row["image_edit_distance"] is None
    assert summary["gold_render_failures"] == 1
    assert summary["visual_samples"] == len(GOLD) - 1


def test_summary_means_over_scored_samples(matched):
    rows, summary = matched
    samples = len(GOLD) - 1
    assert summary["compile_rate"] == pytest.approx(3 / samples)
    assert summary["image_match"] == pytest.approx(2 / samples)
    assert summary["image_match_ws"] == pytest.approx(2 / samples)
    different = by_id(rows)["different"]["image_edit_distance"]
    failures = len(FAILED_PREDICTIONS)
    assert summary["image_edit_distance"] == pytest.approx((different + failures) / samples)


def test_given_gold_images_are_used_instead_of_rendering(matched, monkeypatch):
    rows, summary = matched
    rendered_ids: list[list[str]] = []
    original = render.render_formulas

    def spy(items, settings, progress=None):
        rendered_ids.append([item_id for item_id, _ in items])
        return original(items, settings, progress)

    monkeypatch.setattr(render, "render_formulas", spy)
    gold_images = {row["id"]: row["gold_png"] for row in rows}
    again = visual.visual_match(GOLD, PREDICTED, RENDER, CROP, gold_images)
    assert len(rendered_ids) == 1  # gold and predictions in one call
    gold_rendered = [i for i in rendered_ids[0] if i.startswith(visual.GOLD)]
    assert gold_rendered == [visual.GOLD + "bad_gold"]  # the one without a picture to pass
    assert again == (rows, summary)


def test_render_cropped_gives_pictures_or_reasons_and_wants_unique_ids():
    out = visual.render_cropped(
        [("a", "x ^ { 2 }"), ("b", "  "), ("c", r"\input { x }")], RENDER, CROP
    )
    assert list(out) == ["a", "b", "c"]
    assert Image.open(io.BytesIO(out["a"])).mode == "L"
    assert out["b"] == "empty" and out["c"].startswith("unsafe: ")
    with pytest.raises(ValueError, match="unique"):
        visual.render_cropped([("a", "x"), ("a", "y")], RENDER, CROP)


def test_deng_tolerance_forgives_a_wrong_digit_at_this_resolution(matched):
    """Why EXACT is the default: im2markup's tolerance calls x^2 and x^3 the same picture."""
    row = by_id(matched[0])["different"]
    assert compare_images(row["gold_png"], row["predicted_png"], DENG_TOLERANCE).match


# --- hand-built images --------------------------------------------------------------------

HEIGHT = 40
RNG = np.random.default_rng(7)
PALETTE = RNG.random((HEIGHT, 12)) < 0.5  # 12 distinct random columns, far apart in pixels
BLANK = np.zeros((HEIGHT, 1), dtype=bool)


def columns(spec: str) -> np.ndarray:
    """An ink mask from letters: 'A'..'L' pick palette columns, '.' is a blank column."""
    return np.hstack([BLANK if c == "." else PALETTE[:, [ord(c) - ord("A")]] for c in spec])


def png(mask: np.ndarray, ink: int = 0) -> bytes:
    """Encode an ink mask as the crop stage would store it: gray, ink dark on white."""
    gray = np.where(mask, ink, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(gray, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def compare(gold: str, predicted: str, tolerance=visual.EXACT) -> visual.Comparison:
    return compare_images(png(columns(gold)), png(columns(predicted)), tolerance)


def test_palette_columns_differ_by_more_than_the_tolerance():
    diff = (PALETTE[:, :, None] != PALETTE[:, None, :]).sum(axis=0)
    np.fill_diagonal(diff, HEIGHT)
    assert diff.min() > 2 * DENG_TOLERANCE.column_pixels  # a nudged column stays nearest its own


@pytest.mark.parametrize(
    ("gold", "predicted", "distance"),
    [
        ("ABCD", "ABCD", 0.0),
        ("ABCD", "ACDE", 2 / 4),  # delete B, insert E
        ("ABC", "AFC", 1 / 3),  # one substitution
        ("AB", "ABCD", 2 / 4),  # normalized by the longer sequence
        ("ABCDE", "EDCBA", 4 / 5),  # C stays, the other four are substituted
        ("A.B", "B.A", 2 / 3),
    ],
)
def test_column_edit_distance_by_hand(gold, predicted, distance):
    result = compare(gold, predicted)
    assert result.edit_distance == pytest.approx(distance)
    assert result.match == (distance == 0.0)


def test_match_ws_forgives_whitespace_columns_that_exact_match_does_not():
    result = compare(".A.B.", ".A.......B.")
    assert (result.match, result.match_ws) == (False, True)
    assert result.edit_distance == pytest.approx(6 / 11)
    assert not compare(".A.B.", ".A...C.").match_ws


def test_blank_images_match_only_without_whitespace():
    assert compare("..", ".") == visual.Comparison(False, True, 0.5)
    assert compare("..", ".A").match_ws is False


def test_images_of_different_heights_are_aligned_at_the_top():
    gold = columns("ABC")
    below = np.vstack([gold, np.zeros((3, 3), dtype=bool)])
    above = np.vstack([np.zeros((3, 3), dtype=bool), gold])
    assert compare_images(png(gold), png(below)).match
    shifted = compare_images(png(gold), png(above))
    assert not shifted.match and shifted.edit_distance == 1.0


def test_binarization_threshold_is_128():
    gold = png(columns("AB"))
    assert compare_images(gold, png(columns("AB"), ink=128)).match
    assert compare_images(gold, png(columns("AB"), ink=129)).edit_distance == 1.0


def test_deng_tolerance_forgives_narrow_stretches_and_near_columns():
    assert compare("A.B", "A...B", DENG_TOLERANCE).match  # 2 extra blank columns
    assert not compare("A.B", "A...B").match
    assert compare("ABCDEFGHIJ", "AKLKLFGHIJ", DENG_TOLERANCE).match  # 4 wide
    assert not compare("ABCDEFGHIJ", "AKLKLKGHIJ", DENG_TOLERANCE).match  # 5 wide
    # 6 edits in all, but in two stretches 3 wide on either side of the matching D
    assert compare("ABCDEFJ", "AKLKDLKLJ", DENG_TOLERANCE).match
    assert not compare("ABCDEFJ", "AKLKLKDLKLJ", DENG_TOLERANCE).match
    near = columns("ABC")
    near[0, 1] = ~near[0, 1]  # one pixel flipped in one column
    result = compare_images(png(columns("ABC")), png(near), DENG_TOLERANCE)
    assert result.match and result.edit_distance == pytest.approx(1 / 3)
    assert not compare_images(png(columns("ABC")), png(near)).match


@pytest.mark.parametrize(("flipped", "same"), [(4, True), (5, False)])
def test_deng_tolerance_equates_columns_within_4_pixels(flipped, same):
    """Five nudged columns in a row: forgiven only when each one counts as its original."""
    gold = columns("ABCDEFG")
    nudged = gold.copy()
    nudged[:flipped, 1:6] = ~nudged[:flipped, 1:6]
    result = compare_images(png(gold), png(nudged), DENG_TOLERANCE)
    assert result.match is same and result.edit_distance == pytest.approx(5 / 7)


def test_deng_tolerance_counts_inserted_columns_too():
    """im2markup forgives any insertion; a prediction with extra symbols must not match."""
    assert compare("ABC", "ABCDEFG", DENG_TOLERANCE).match  # 4 inserted
    assert not compare("ABC", "ABCDEFGH", DENG_TOLERANCE).match  # 5 inserted
    assert not compare("ABC", "ABCDEFGH", DENG_TOLERANCE).match_ws


def test_a_thousand_comparisons_of_wide_images_take_seconds():
    rng = np.random.default_rng(0)
    images = [png(rng.random((48, 400)) < 0.1) for _ in range(20)]
    start = time.perf_counter()
    for i in range(300):
        compare_images(images[i % 20], images[(i * 7 + 1) % 20])
    assert time.perf_counter() - start < 10.0  # ~0.3 s unloaded: 1000 would be about 1 s
