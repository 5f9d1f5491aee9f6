"""Sinusoidal position signals against hand computation."""

from __future__ import annotations

import math

import numpy as np

from pipeline.model import positions


def test_timing_signal_matches_hand_computation() -> None:
    signal = positions.timing_signal_2d(2, 3, 10).numpy()
    assert signal.shape == (2, 3, 10)
    # channels // 4 = 2 timescales, 1 and 1e-4: [sin r, sin r/1e4, cos r, cos r/1e4] for the row,
    # the same for the column, then 2 unused channels.
    for row, col in [(0, 0), (1, 2), (0, 1)]:
        expected = [
            math.sin(row), math.sin(row * 1e-4), math.cos(row), math.cos(row * 1e-4),
            math.sin(col), math.sin(col * 1e-4), math.cos(col), math.cos(col * 1e-4),
            0.0, 0.0,
        ]  # fmt: skip
        np.testing.assert_allclose(signal[row, col], expected, atol=1e-6)


def test_token_positions_match_hand_computation_and_have_no_limit() -> None:
    signal = positions.timing_signal_1d(np.array([0, 3, 100_000]), 5).numpy()
    assert signal.shape == (3, 5)
    # 5 // 2 = 2 timescales, 1 and 1e-4: [sin p, sin p/1e4, cos p, cos p/1e4], then one 0
    for row, p in enumerate((0, 3, 100_000)):
        expected = [math.sin(p), math.sin(p * 1e-4), math.cos(p), math.cos(p * 1e-4), 0.0]
        np.testing.assert_allclose(signal[row], expected, atol=1e-3 if p > 1000 else 1e-6)
