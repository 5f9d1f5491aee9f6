"""Beam search: hand-made probability tables check the search itself, tiny models the wiring.

A table maps a prefix ``(row, token, ...)`` to the next-token probabilities, so every expected
result and score below can be worked out by hand. Its step function reports attention as the
one-hot of the prefix's node, which makes the returned attention spell out the returned path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pytest
import tensorflow as tf

from pipeline import config
from pipeline.contracts import END_ID as END
from pipeline.contracts import PAD_ID as PAD
from pipeline.contracts import START_ID as START
from pipeline.contracts import UNK_ID as UNK
from pipeline.model import beam, networks

keras = tf.keras
VOCAB = 12
A, B = 4, 5  # two ordinary tokens for the tables
Table = Mapping[tuple[int, ...], Mapping[int, float]]


@pytest.fixture(autouse=True)
def seeded() -> None:
    keras.utils.set_random_seed(0)


# --- hand-made step functions ---------------------------------------------------------------


def compile_table(table: Table) -> tuple[list[tuple[int, ...]], np.ndarray, np.ndarray]:
    """Nodes (prefixes, then a sink), log-prob rows ``[N, V]`` and transitions ``[N, V]``.

    Unlisted tokens share what the listed ones leave; unlisted prefixes go to the sink, which
    ends almost surely.
    """
    nodes = [*table, ()]
    sink = len(nodes) - 1
    log_probs = np.zeros((len(nodes), VOCAB), np.float32)
    transitions = np.full((len(nodes), VOCAB), sink, np.int32)
    for i, prefix in enumerate(nodes):
        listed = dict(table.get(prefix, {END: 0.97}))
        rest = (1.0 - sum(listed.values())) / (VOCAB - len(listed))
        log_probs[i] = [math.log(listed.get(token, rest)) for token in range(VOCAB)]
        for token in range(VOCAB):
            if prefix + (token,) in table:
                transitions[i, token] = nodes.index(prefix + (token,))
    return nodes, log_probs, transitions


def table_search(
    table: Table, rows: list[int], beam_width: int, max_len: int, alpha: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[int, ...]]]:
    """Run ``beam.beam_search`` (compiled) over ``table`` for the given row roots."""
    nodes, log_probs, transitions = compile_table(table)
    roots = np.repeat([nodes.index((row,)) for row in rows], beam_width).astype(np.int32)

    def step_fn(tokens: tf.Tensor, state: list[tf.Tensor]) -> tuple:
        node = state[0]
        moved = tf.gather_nd(transitions, tf.stack([node, tokens], axis=-1))
        node = tf.where(tokens == START, node, moved)  # START only moves onto the root
        return tf.gather(log_probs, node), tf.one_hot(node, len(nodes)), [node]

    @tf.function
    def search() -> beam.BeamResult:
        return beam.beam_search(
            step_fn, [tf.constant(roots)], len(rows), beam_width, max_len, alpha, len(nodes)
        )

    result = search()
    return result.ids.numpy(), result.scores.numpy(), result.attention.numpy(), nodes


def path_attention(nodes: list[tuple[int, ...]], path: list[tuple[int, ...]], steps: int):
    """The attention a hypothesis through ``path`` (the prefixes it starts each step from) has."""
    expected = np.zeros((steps, len(nodes)), np.float32)
    for t, prefix in enumerate(path):
        expected[t, nodes.index(prefix)] = 1.0
    return expected


def lp(length: int, alpha: float) -> float:
    return ((5 + length) / 6) ** alpha


# Greedy follows A (0.5, 0.9) into a poor ending (0.3): 0.135. B B </s> is 0.45 * 0.9 * 0.95.
GREEDY_TRAP = {
    (0,): {A: 0.5, B: 0.45},
    (0, A): {A: 0.9},
    (0, A, A): {END: 0.3},
    (0, B): {B: 0.9},
    (0, B, B): {END: 0.95},
}
# Ending at once (0.5) beats A B </s> (0.45 * 0.95 * 0.95) unless length is rewarded.
SHORT_OR_LONG = {(0,): {END: 0.5, A: 0.45}, (0, A): {B: 0.95}, (0, A, B): {END: 0.95}}


def test_width_two_finds_the_sequence_greedy_misses() -> None:
    ids, scores, attention, nodes = table_search(GREEDY_TRAP, [0], 1, 5, 0.0)
    assert ids.tolist() == [[A, A, END, PAD, PAD]]
    assert scores[0] == pytest.approx(math.log(0.5 * 0.9 * 0.3), abs=1e-5)
    path = [(0,), (0, A), (0, A, A)]
    np.testing.assert_array_equal(attention[0], path_attention(nodes, path, 5))

    best = math.log(0.45) + math.log(0.9) + math.log(0.95)
    for width in (2, 3):
        ids, scores, attention, nodes = table_search(GREEDY_TRAP, [0], width, 5, 0.0)
        assert ids.tolist() == [[B, B, END, PAD, PAD]]
        assert scores[0] == pytest.approx(best, abs=1e-5)
        # B B was beam 1 until the last step: its history must have moved with it.
        path = [(0,), (0, B), (0, B, B)]
        np.testing.assert_array_equal(attention[0], path_attention(nodes, path, 5))

    _, scores, _, _ = table_search(GREEDY_TRAP, [0], 2, 5, 0.6)
    assert scores[0] == pytest.approx(best / lp(3, 0.6), abs=1e-5)


def test_length_penalty_changes_the_winner() -> None:
    ids, scores, attention, nodes = table_search(SHORT_OR_LONG, [0], 2, 5, 0.0)
    assert ids.tolist() == [[END, PAD, PAD, PAD, PAD]]
    assert scores[0] == pytest.approx(math.log(0.5), abs=1e-5)
    np.testing.assert_array_equal(attention[0], path_attention(nodes, [(0,)], 5))

    ids, scores, attention, nodes = table_search(SHORT_OR_LONG, [0], 2, 5, 2.0)
    assert ids.tolist() == [[A, B, END, PAD, PAD]]
    expected = (math.log(0.45) + 2 * math.log(0.95)) / lp(3, 2.0)
    assert scores[0] == pytest.approx(expected, abs=1e-5)
    assert expected > math.log(0.5) / lp(1, 2.0)  # the short one, kept but beaten
    path = [(0,), (0, A), (0, A, B)]
    np.testing.assert_array_equal(attention[0], path_attention(nodes, path, 5))


def test_length_penalty_factor() -> None:
    factors = beam.length_penalty_factor(tf.constant([1, 3, 10]), 0.6).numpy()
    np.testing.assert_allclose(factors, [lp(n, 0.6) for n in (1, 3, 10)], rtol=1e-6)
    assert beam.length_penalty_factor(tf.constant([1, 7]), 0.0).numpy().tolist() == [1.0, 1.0]


def test_max_len_cuts_the_search() -> None:
    """At the limit the best hypothesis comes back unfinished, like greedy's, and no longer."""
    ids, scores, attention, nodes = table_search(SHORT_OR_LONG, [0], 2, 2, 2.0)
    assert ids.tolist() == [[A, B]]
    assert scores[0] == pytest.approx((math.log(0.45) + math.log(0.95)) / lp(2, 2.0), abs=1e-5)
    assert attention.shape == (1, 2, len(nodes))


def test_rows_are_independent_in_a_table() -> None:
    """Row 0 finishes after three steps while row 1 runs on; neither changes the other."""
    table = {
        **GREEDY_TRAP,
        (1,): {A: 0.7},
        (1, A): {B: 0.8},
        (1, A, B): {A: 0.9},
        (1, A, B, A): {A: 0.9},
    }
    together = table_search(table, [0, 1], 2, 6, 0.6)
    assert together[0].tolist() == [[B, B, END, PAD, PAD, PAD], [A, B, A, A, END, PAD]]
    for row in (0, 1):
        alone = table_search(table, [row], 2, 6, 0.6)
        for joint, single in zip(together[:3], alone[:3], strict=True):
            np.testing.assert_array_equal(joint[row], single[0])


def test_beam_search_rejects_bad_arguments() -> None:
    nodes, log_probs, _ = compile_table(GREEDY_TRAP)

    def step_fn(tokens: tf.Tensor, state: list[tf.Tensor]) -> tuple:
        return tf.gather(log_probs, state[0]), tf.one_hot(state[0], len(nodes)), state

    state = [tf.zeros([2], tf.int32)]
    for width, max_len, alpha, message in [
        (0, 3, 0.0, "beam_width"),
        (2.0, 3, 0.0, "beam_width"),
        (2, 0, 0.0, "max_len"),
        (2, 3, -0.5, "length_penalty"),
        (2, 3, float("nan"), "length_penalty"),
    ]:
        with pytest.raises(ValueError, match=message):
            beam.beam_search(step_fn, state, 1, width, max_len, alpha, len(nodes))


# --- models -----------------------------------------------------------------------------------


def tiny_model(variant: str) -> networks.FormulaModel:
    """An untrained tiny model with a random output layer that never says PAD or START."""
    keras.utils.set_random_seed(0)
    settings = config.section(
        "model", {"variant": variant, "preset": "tiny", "timing_signal": None}
    )
    model = networks.build_model(networks.model_config(settings), VOCAB)
    layer = model.decoder.logits
    rng = np.random.default_rng(0)
    layer.kernel.assign(rng.normal(size=layer.kernel.shape).astype(np.float32))
    set_end_bias(model, 0.0)
    return model


def set_end_bias(model: networks.FormulaModel, shift: float) -> None:
    """``</s>`` starts 30 below the rest (untrained models never end); ``shift`` lifts it."""
    bias = np.zeros(VOCAB, np.float32)
    bias[[PAD, START, END]] = -30.0
    bias[END] += shift
    model.decoder.logits.bias.assign(bias)


def end_shifts(model: networks.FormulaModel, images: np.ndarray, max_len: int) -> np.ndarray:
    """Sorted shifts for ``set_end_bias`` that end the greedy rows at different steps.

    At each step of the (``</s>``-free) greedy output, ``</s>`` trails the best token by some
    margin; lifting its bias by ``m`` ends each row at its first step with a margin below ``m``
    and leaves the steps before alone. Each shift lies halfway between two margins at least 1e-3
    apart, so no step is a float32 near-tie that rounding could decide either way.
    """
    set_end_bias(model, 0.0)
    ids = model.greedy_decode(images, max_len)[0].numpy()
    assert (ids != END).all()
    tokens_in = np.concatenate([np.full((len(ids), 1), START), ids[:, :-1]], axis=1)
    logits = model((images, tokens_in)).numpy()
    margins = np.unique(logits[..., UNK:].max(-1) - logits[..., END])
    apart = np.diff(margins) > 1e-3
    return (margins[:-1][apart] + margins[1:][apart]) / 2


def pick(shifts: np.ndarray, fraction: float) -> float:
    return float(shifts[round(fraction * (len(shifts) - 1))])


def sample_images(model: networks.FormulaModel, rows: int = 3) -> np.ndarray:
    """Random ink at different densities, so that rows really differ."""
    rng = np.random.default_rng(1)
    height = model.config.fixed_height or 32
    density = np.array([0.05, 0.3, 0.7, 0.5])[:rows, None, None, None]
    return (rng.random((rows, height, 64, 1)) < density).astype(np.float32)


def end_steps(ids: np.ndarray) -> list[int]:
    """Step of each row's ``</s>``, or the length where there is none."""
    return [int(np.argmax(row == END)) if (row == END).any() else len(row) for row in ids]


@pytest.mark.parametrize("variant", networks.VARIANTS)
def test_width_one_is_greedy(variant: str) -> None:
    model = tiny_model(variant)
    images, max_len = sample_images(model), 7
    shifts = end_shifts(model, images, max_len)
    seen = set()
    for shift in [shifts[0] - 1, *(pick(shifts, f) for f in (0, 0.2, 0.5, 0.8, 1)), shifts[-1] + 1]:
        set_end_bias(model, shift)
        greedy_ids, greedy_attention = model.greedy_decode(images, max_len)
        ids, scores, attention = model.beam_decode(images, max_len, 1, 0.6)
        np.testing.assert_array_equal(ids.numpy(), greedy_ids.numpy())
        np.testing.assert_array_equal(attention.numpy(), greedy_attention.numpy())
        assert np.isfinite(scores.numpy()).all()
        seen.add(tuple(end_steps(ids.numpy())))
    assert (max_len,) * 3 in seen and (0,) * 3 in seen  # never ended, ended at once
    assert any(len(set(steps)) > 1 for steps in seen)  # some rows ended, others ran on


def test_batch_rows_decode_as_they_would_alone() -> None:
    model = tiny_model("nopool")
    images, max_len = sample_images(model, rows=4), 8
    set_end_bias(model, pick(end_shifts(model, images, max_len), 0.4))
    ids, scores, attention = (x.numpy() for x in model.beam_decode(images, max_len, 3))
    assert len(set(end_steps(ids))) > 1  # rows finish at different steps
    for row in range(len(images)):
        alone = model.beam_decode(images[row : row + 1], max_len, 3)
        np.testing.assert_array_equal(alone[0].numpy()[0], ids[row])
        np.testing.assert_allclose(alone[1].numpy()[0], scores[row], rtol=1e-5)
        np.testing.assert_allclose(alone[2].numpy()[0], attention[row], atol=1e-6)


def test_beam_output_contract_and_max_len() -> None:
    model = tiny_model("strips")
    images = sample_images(model)
    set_end_bias(model, pick(end_shifts(model, images, 6), 0.3))
    rows, cols = model.encoder_grid(images)
    for max_len in (6, 2, 1):
        ids, scores, attention = model.beam_decode(images, max_len, beam_width=3)
        assert ids.shape == (3, max_len) and ids.dtype == tf.int32
        assert scores.shape == (3,) and scores.dtype == tf.float32
        assert attention.shape == (3, max_len, rows * cols) and attention.dtype == tf.float32
        ids, sums = ids.numpy(), attention.numpy().sum(-1)
        for row, end in enumerate(end_steps(ids)):
            live = min(end + 1, max_len)
            np.testing.assert_allclose(sums[row, :live], 1.0, atol=1e-5)
            assert (sums[row, live:] == 0).all() and (ids[row, live:] == PAD).all()
            assert (ids[row, :live] != PAD).all()
        if max_len == 6:
            assert any(end < max_len - 1 for end in end_steps(ids))  # padding was exercised
    assert model._beam_graph.experimental_get_tracing_count() <= 2  # max_len does not retrace


def test_beam_decode_rejects_bad_arguments() -> None:
    model = tiny_model("nopool")
    images = sample_images(model, rows=1)
    for kwargs, message in [
        ({"beam_width": 0}, "beam_width"),
        ({"beam_width": True}, "beam_width"),
        ({"beam_width": VOCAB + 1}, "vocabulary"),
        ({"max_len": 0}, "max_len"),
        ({"length_penalty": -0.1}, "length_penalty"),
        ({"length_penalty": float("inf")}, "length_penalty"),
    ]:
        arguments = {"max_len": 3, "beam_width": 2, **kwargs}
        with pytest.raises(ValueError, match=message):
            model.beam_decode(images, **arguments)
