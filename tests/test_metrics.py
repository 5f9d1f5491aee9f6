from __future__ import annotations

import math
import random

import pytest
import sacrebleu

from pipeline import metrics

REF = r"\frac { a } { b } + \sqrt { c } = x ^ { 2 }"


def dp_distance(a: list[str], b: list[str]) -> int:
    """The textbook DP, as the oracle for the bit-parallel version."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]


def test_identical_strings_score_perfectly():
    scores = metrics.score_corpus([REF, "x + y = z"], [REF, "x  +  y = z"])
    assert scores == {
        "bleu": pytest.approx(1.0),
        "bleu_unsmoothed": pytest.approx(1.0),
        "edit_distance": 0.0,
        "exact_match": 1.0,
        "samples": 2,
    }
    assert metrics.sentence_bleu("x + y", "x + y") == pytest.approx(1.0)


def test_known_levenshtein_case():
    assert metrics.edit_distance(["a", "b", "c", "d"], ["a", "x", "c"]) == 2
    assert metrics.normalized_edit_distance("a b c d", "a x c") == 0.5
    assert metrics.edit_distance([], ["a", "b"]) == 2
    assert metrics.edit_distance(["a", "b"], []) == 2
    assert metrics.edit_distance(list("kitten"), list("sitting")) == 3


def test_edit_distance_matches_the_dp():
    rng = random.Random(0)
    for _ in range(500):
        a = [rng.choice("abcd") for _ in range(rng.randint(0, 90))]
        b = [rng.choice("abcd") for _ in range(rng.randint(0, 90))]
        assert metrics.edit_distance(a, b) == dp_distance(a, b), (a, b)


def test_unsmoothed_bleu_is_zero_without_a_4gram_match():
    ref, hyp = "a b c d e", "a b c x e"  # shares 1-, 2-, 3-grams but no 4-gram
    assert metrics.corpus_bleu([ref], [hyp], smooth=False) == 0.0
    assert metrics.corpus_bleu([ref], [hyp], smooth=True) > 0.0


def test_corpus_bleu_by_hand():
    # hyp "a b c d e f" vs ref "a b c d e g": matches 5/6, 4/5, 3/4, 2/3, equal lengths (BP 1)
    by_hand = math.exp(sum(math.log(p) for p in (5 / 6, 4 / 5, 3 / 4, 2 / 3)) / 4)
    score = metrics.corpus_bleu(["a b c d e g"], ["a b c d e f"], smooth=False)
    assert score == pytest.approx(by_hand, abs=1e-6)


def test_corpus_bleu_agrees_with_sacrebleu_cli_call():
    refs = [REF, "x + y = z", r"\alpha \beta"]
    hyps = [r"\frac { a } { b } + \sqrt { d } = x ^ { 2 }", "x + y", r"\alpha \beta \gamma"]
    expected = sacrebleu.corpus_bleu(hyps, [refs], tokenize="none").score / 100
    assert metrics.corpus_bleu(refs, hyps, smooth=True) == pytest.approx(expected)


def test_empty_prediction_is_a_valid_sample():
    assert metrics.sentence_bleu(REF, "") == 0.0
    assert metrics.normalized_edit_distance(REF, "") == 1.0
    assert not metrics.exact_match(REF, "")
    scores = metrics.score_corpus([REF, "x + y"], ["", "x + y"])
    assert scores["samples"] == 2
    assert scores["edit_distance"] == pytest.approx(0.5)
    assert scores["exact_match"] == 0.5


def test_mismatched_or_empty_inputs_are_refused():
    with pytest.raises(ValueError, match="pair up"):
        metrics.score_corpus(["a"], [])
    with pytest.raises(ValueError, match="no samples"):
        metrics.score_corpus([], [])
