"""Sinusoidal position signals (tensor2tensor's formulas): where a feature or a token sits.

Attention is blind to order and place; adding these lets it tell identical glyphs (or tokens)
apart by position. No weights, and no upper limit on the position.
"""

from __future__ import annotations

import math

import tensorflow as tf


def sinusoids(
    positions: tf.Tensor, channels: int, min_timescale: float = 1.0, max_timescale: float = 1.0e4
) -> tf.Tensor:
    """``[N, 2n]`` float32 for ``[N]`` positions: sin then cos at ``n = channels // 2`` geometric
    timescales, as t2t's ``get_timing_signal_1d``. t2t divides by ``n - 1``, which is NaN for
    ``n == 1``; that case uses the single timescale 1."""
    count = channels // 2
    increment = math.log(max_timescale / min_timescale) / max(count - 1, 1)
    inv_timescales = min_timescale * tf.exp(tf.range(count, dtype=tf.float32) * -increment)
    scaled = tf.cast(positions, tf.float32)[:, None] * inv_timescales[None, :]
    return tf.concat([tf.sin(scaled), tf.cos(scaled)], axis=1)


def timing_signal_1d(positions: tf.Tensor, channels: int) -> tf.Tensor:
    """``[N, channels]``: ``sinusoids`` with a zero channel when ``channels`` is odd."""
    signal = sinusoids(positions, channels)
    return tf.pad(signal, [[0, 0], [0, channels % 2]])


def timing_signal_2d(height: int | tf.Tensor, width: int | tf.Tensor, channels: int) -> tf.Tensor:
    """``[height, width, channels]`` float32, as tensor2tensor's ``add_timing_signal_nd`` adds.

    The first ``2n`` channels carry sin/cos of the row index and the next ``2n`` those of the
    column index (``n = channels // 4`` timescales); leftover channels get 0.
    """
    half = 2 * (channels // 4)
    rows = tf.broadcast_to(sinusoids(tf.range(height), half)[:, None, :], [height, width, half])
    cols = tf.broadcast_to(sinusoids(tf.range(width), half)[None, :, :], [height, width, half])
    rest = tf.zeros([height, width, channels - 2 * half])
    return tf.concat([rows, cols, rest], axis=-1)
