"""Batched greedy decoding over any step function, compiled as one ``tf.while_loop``.

Like ``beam_search``, the search knows nothing about the model: a step function maps the tokens
just emitted (and a state) to next-token scores and an attention row, so every variant decodes
through this one loop and a test can drive it with a hand-made table.

Invariants: each row feeds back its own argmax, starting from ``start_id``; a row that has emitted
``end_id`` emits PAD with zero attention from then on, and its state no longer matters; the loop
ends when every row has finished or after ``max_len`` steps. The result follows beam search's
contract (ids int32 ``[B, max_len]`` with ``</s>`` kept, attention float32 ``[B, max_len, L]``),
and beam width 1 gives the same ids and attention.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from pipeline.contracts import PAD_ID as PAD
from pipeline.model.beam import StepFn


def greedy_search(
    step_fn: StepFn,
    initial_state: Any,
    batch_size: tf.Tensor | int,
    max_len: tf.Tensor | int,
    *,
    start_id: int = 1,
    end_id: int = 2,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Argmax feedback; ``step_fn``'s scores may be logits or log-probabilities (same argmax)."""
    max_len = tf.convert_to_tensor(max_len, tf.int32)
    tokens = tf.TensorArray(tf.int32, size=0, dynamic_size=True, element_shape=[None])
    weights = tf.TensorArray(tf.float32, size=0, dynamic_size=True, element_shape=[None, None])

    def cond(t, token, finished, state, tokens, weights):
        return tf.logical_and(t < max_len, tf.logical_not(tf.reduce_all(finished)))

    def body(t, token, finished, state, tokens, weights):
        scores, attention, state = step_fn(token, state)
        token = tf.where(finished, PAD, tf.argmax(scores, axis=-1, output_type=tf.int32))
        attention = tf.where(finished[:, None], 0.0, tf.cast(attention, tf.float32))
        finished = tf.logical_or(finished, tf.equal(token, end_id))
        tokens, weights = tokens.write(t, token), weights.write(t, attention)
        return t + 1, token, finished, state, tokens, weights

    start = (
        tf.constant(0),
        tf.fill([batch_size], start_id),
        tf.zeros([batch_size], tf.bool),
        initial_state,
        tokens,
        weights,
    )
    steps, _, _, _, tokens, weights = tf.while_loop(cond, body, start, maximum_iterations=max_len)
    missing = max_len - steps
    token_ids = tf.pad(tf.transpose(tokens.stack()), [[0, 0], [0, missing]])
    attention = tf.pad(tf.transpose(weights.stack(), [1, 0, 2]), [[0, 0], [0, missing], [0, 0]])
    return token_ids, attention
