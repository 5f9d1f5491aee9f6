"""Batched beam search over any step function, compiled as one ``tf.while_loop``.

The search knows nothing about the model: a step function maps the tokens just emitted (and a
recurrent state) to next-token log-probabilities and an attention row, so the same code decodes
every model variant and a test can drive it with a hand-made table. Every tensor the step function
sees has a leading dimension ``B * K``: beam ``k`` of batch row ``b`` sits at index ``b * K + k``.

The output follows greedy decoding's contract, so callers can switch between the two freely:
ids int32 ``[B, max_len]`` with ``</s>`` kept and 0 (PAD) after it, attention float32
``[B, max_len, L]`` that is zero after the end. Width 1 reproduces greedy decoding exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import tensorflow as tf

from pipeline.contracts import PAD_ID as PAD  # results are padded like greedy's

_NEG_INF = float("-inf")

# (tokens [B*K] int32, state) -> (log_probs [B*K, V] float32, attention [B*K, L] float32, state)
StepFn = Callable[[tf.Tensor, Any], tuple[tf.Tensor, tf.Tensor, Any]]


def log_probabilities(step_fn: StepFn) -> StepFn:
    """A step function that returns logits, as one that returns what beam search ranks by."""

    def step(tokens: tf.Tensor, state: Any) -> tuple[tf.Tensor, tf.Tensor, Any]:
        logits, attention, state = step_fn(tokens, state)
        return tf.nn.log_softmax(tf.cast(logits, tf.float32)), attention, state

    return step


class BeamResult(NamedTuple):
    """The best hypothesis of every batch row."""

    ids: tf.Tensor  # int32 [B, max_len]: </s> kept, PAD after it
    scores: tf.Tensor  # float32 [B]: sum of log-probs / lp(length)
    attention: tf.Tensor  # float32 [B, max_len, L]: zero after </s>


class _Beams(NamedTuple):
    """Loop state per beam, all ``[B, K, ...]``; histories grow by one step per iteration."""

    log_probs: tf.Tensor  # float32: summed token log-probs (frozen once finished)
    lengths: tf.Tensor  # int32: tokens emitted up to and including </s>
    finished: tf.Tensor  # bool
    ids: tf.Tensor  # int32 [B, K, t]
    attention: tf.Tensor  # float32 [B, K, t, L]


def check_arguments(beam_width: int, max_len: Any, length_penalty: float) -> None:
    """Fail early with a readable message; inside the graph these would be obscure shape errors."""
    if isinstance(beam_width, bool) or not isinstance(beam_width, int) or beam_width < 1:
        raise ValueError(f"beam_width must be an integer >= 1, got {beam_width!r}")
    if not tf.is_tensor(max_len) and (isinstance(max_len, bool) or int(max_len) < 1):
        raise ValueError(f"max_len must be an integer >= 1, got {max_len!r}")
    if not (isinstance(length_penalty, (int, float)) and 0 <= length_penalty < math.inf):
        raise ValueError(f"length_penalty must be a finite number >= 0, got {length_penalty!r}")


def length_penalty_factor(lengths: tf.Tensor, alpha: float) -> tf.Tensor:
    """GNMT's ``lp(len) = ((5 + len) / 6) ** alpha`` (Wu et al. 2016), float32.

    Every token adds a negative log-probability, so the plain sum always favours stopping early
    and beam search, which ranks by that sum, prefers short outputs (it truncates formulas).
    Dividing by ``lp`` grows with length and offsets this; ``alpha = 0`` gives ``lp = 1``, the
    plain sum.
    """
    return tf.pow((5.0 + tf.cast(lengths, tf.float32)) / 6.0, alpha)


def beam_search(
    step_fn: StepFn,
    initial_state: Any,
    batch_size: tf.Tensor | int,
    beam_width: int,
    max_len: tf.Tensor | int,
    length_penalty: float,
    attention_size: tf.Tensor | int,
    *,
    start_id: int = 1,
    end_id: int = 2,
) -> BeamResult:
    """Keep the ``beam_width`` best hypotheses per row, ranked by ``sum log p / lp(len)``.

    ``initial_state`` is any nest of tensors with leading dimension ``batch_size * beam_width``
    (tile the per-row state with ``tf.repeat``); it is reordered along with the beams. Only beam
    0 starts alive, so the first step fans out into ``K`` distinct hypotheses rather than ``K``
    copies of one; this needs ``K <= V``. A hypothesis that emits ``</s>`` stays in the beam with
    its score frozen (it can only extend by PAD at no cost), so it competes with the live ones
    until the end. The loop stops once every hypothesis of every row has finished, or after
    ``max_len`` steps, when the best hypothesis is returned finished or not (as greedy does).
    """
    check_arguments(beam_width, max_len, length_penalty)
    max_len = tf.convert_to_tensor(max_len, tf.int32)
    alpha = float(length_penalty)
    first = tf.range(beam_width) == 0
    beams = _Beams(
        log_probs=tf.where(first, 0.0, _NEG_INF)[None, :] + tf.zeros([batch_size, 1]),
        lengths=tf.zeros([batch_size, beam_width], tf.int32),
        finished=tf.zeros([batch_size, beam_width], tf.bool),
        ids=tf.zeros([batch_size, beam_width, 0], tf.int32),
        attention=tf.zeros([batch_size, beam_width, 0, attention_size], tf.float32),
    )
    tokens = tf.fill([batch_size * beam_width], start_id)

    def cond(t: tf.Tensor, tokens: tf.Tensor, state: Any, beams: _Beams) -> tf.Tensor:
        return tf.logical_and(t < max_len, tf.logical_not(tf.reduce_all(beams.finished)))

    def body(t: tf.Tensor, tokens: tf.Tensor, state: Any, beams: _Beams) -> tuple:
        log_probs, attention, state = step_fn(tokens, state)
        beams, parents = _advance(beams, log_probs, attention, beam_width, alpha, end_id)
        rows = tf.range(tf.shape(parents)[0])[:, None] * beam_width
        flat_parents = tf.reshape(rows + parents, [-1])
        state = tf.nest.map_structure(lambda s: tf.gather(s, flat_parents), state)
        return t + 1, tf.reshape(beams.ids[:, :, -1], [-1]), state, beams

    loop_vars = (tf.constant(0), tokens, initial_state, beams)
    invariants = tf.nest.map_structure(lambda x: tf.TensorShape(x.shape), loop_vars)
    growing = invariants[3]._replace(  # histories gain a step per iteration
        ids=tf.TensorShape([None, beam_width, None]),
        attention=tf.TensorShape([None, beam_width, None, None]),
    )
    invariants = (*invariants[:3], growing)
    _, _, _, beams = tf.while_loop(
        cond, body, loop_vars, shape_invariants=invariants, maximum_iterations=max_len
    )
    return _best(beams, max_len, alpha)


def _advance(
    beams: _Beams,
    log_probs: tf.Tensor,
    attention: tf.Tensor,
    beam_width: int,
    alpha: float,
    end_id: int,
) -> tuple[_Beams, tf.Tensor]:
    """One step: score all ``K * V`` extensions per row, keep the top ``K``; returns parents."""
    batch = tf.shape(beams.finished)[0]
    log_probs = tf.reshape(tf.cast(log_probs, tf.float32), [batch, beam_width, -1])
    vocab = tf.shape(log_probs)[2]
    pad_only = tf.where(tf.range(vocab) == PAD, 0.0, _NEG_INF)  # a finished beam's extensions
    step = tf.where(beams.finished[..., None], pad_only, log_probs)
    sums = tf.reshape(beams.log_probs[..., None] + step, [batch, -1])
    lengths = beams.lengths + tf.cast(tf.logical_not(beams.finished), tf.int32)
    penalty = tf.repeat(length_penalty_factor(lengths, alpha), vocab, axis=1)
    _, chosen = tf.math.top_k(sums / penalty, k=beam_width)  # sorted: beam 0 is the best
    parents, tokens = chosen // vocab, chosen % vocab

    def pick(x: tf.Tensor) -> tf.Tensor:
        return tf.gather(x, parents, batch_dims=1)

    was_finished = pick(beams.finished)
    tokens = tf.where(was_finished, PAD, tokens)
    attention = tf.reshape(tf.cast(attention, tf.float32), [batch, beam_width, -1])
    attention = tf.where(was_finished[..., None], 0.0, pick(attention))
    new = _Beams(
        log_probs=tf.gather(sums, chosen, batch_dims=1),
        lengths=pick(lengths),
        finished=tf.logical_or(was_finished, tf.equal(tokens, end_id)),
        ids=tf.concat([pick(beams.ids), tokens[..., None]], axis=2),
        attention=tf.concat([pick(beams.attention), attention[:, :, None]], axis=2),
    )
    return new, parents


def _best(beams: _Beams, max_len: tf.Tensor, alpha: float) -> BeamResult:
    """Beam 0 (top_k keeps beams sorted), padded with zeros to ``max_len`` steps."""
    missing = max_len - tf.shape(beams.ids)[2]
    ids = tf.pad(beams.ids[:, 0], [[0, 0], [0, missing]])
    attention = tf.pad(beams.attention[:, 0], [[0, 0], [0, missing], [0, 0]])
    scores = beams.log_probs[:, 0] / length_penalty_factor(beams.lengths[:, 0], alpha)
    return BeamResult(ids=ids, scores=scores, attention=attention)
