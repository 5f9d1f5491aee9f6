"""Greedy search over hand-made probability tables (see test_beam): the search itself, no model."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from pipeline.contracts import END_ID as END
from pipeline.contracts import PAD_ID as PAD
from pipeline.contracts import START_ID as START
from pipeline.model import beam
from pipeline.model.greedy import greedy_search
from tests.model.test_beam import GREEDY_TRAP, A, B, Table, compile_table, path_attention

# Row 0 falls into GREEDY_TRAP's poor ending after 3 tokens; row 1 ends after 1.
TWO_ROWS = {**GREEDY_TRAP, (1,): {END: 0.9}}


def table_step(table: Table, rows: list[int]):
    """``greedy_search``'s arguments for ``table``: a step function and the rows' root nodes."""
    nodes, log_probs, transitions = compile_table(table)

    def step_fn(tokens: tf.Tensor, state: list[tf.Tensor]) -> tuple:
        node = state[0]
        moved = tf.gather_nd(transitions, tf.stack([node, tokens], axis=-1))
        node = tf.where(tokens == START, node, moved)
        return tf.gather(log_probs, node), tf.one_hot(node, len(nodes)), [node]

    roots = [tf.constant([nodes.index((row,)) for row in rows], tf.int32)]
    return step_fn, roots, nodes


def search(table: Table, rows: list[int], max_len: int) -> tuple[np.ndarray, np.ndarray, list]:
    step_fn, roots, nodes = table_step(table, rows)
    ids, attention = tf.function(lambda: greedy_search(step_fn, roots, len(rows), max_len))()
    return ids.numpy(), attention.numpy(), nodes


def test_each_row_follows_its_argmax_and_pads_after_its_end() -> None:
    ids, attention, nodes = search(TWO_ROWS, [0, 1], max_len=6)
    np.testing.assert_array_equal(ids, [[A, A, END, PAD, PAD, PAD], [END, PAD, PAD, PAD, PAD, PAD]])
    path = path_attention(nodes, [(0,), (0, A), (0, A, A)], steps=6)
    np.testing.assert_array_equal(attention[0], path)
    np.testing.assert_array_equal(attention[1], path_attention(nodes, [(1,)], steps=6))


def test_max_len_cuts_an_unfinished_row() -> None:
    ids, attention, _ = search(TWO_ROWS, [0, 1], max_len=2)
    np.testing.assert_array_equal(ids, [[A, A], [END, PAD]])
    assert attention.shape[:2] == (2, 2) and attention[1, 1].sum() == 0


def test_width_one_beam_search_is_greedy_search() -> None:
    table = {**TWO_ROWS, (1,): {B: 0.6}, (1, B): {END: 0.7}}
    ids, attention, nodes = search(table, [0, 1], max_len=5)
    step_fn, roots, _ = table_step(table, [0, 1])
    result = tf.function(lambda: beam.beam_search(step_fn, roots, 2, 1, 5, 0.0, len(nodes)))()
    np.testing.assert_array_equal(result.ids.numpy(), ids)
    np.testing.assert_array_equal(result.attention.numpy(), attention)
