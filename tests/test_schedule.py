"""The learning-rate schedule: warm-up, cosine decay to the nearest budget limit."""

from __future__ import annotations

import math

import pytest

from pipeline.schedule import Schedule, budget_spent


def test_warmup_ramps_linearly_to_the_peak():
    schedule = Schedule(peak=0.01, kind="cosine", warmup_steps=4)
    assert [schedule.rate(step, 0.0) for step in range(5)] == pytest.approx(
        [0.0025, 0.005, 0.0075, 0.01, 0.01]
    )


def test_constant_stays_at_the_peak_whatever_is_spent():
    schedule = Schedule(peak=0.002)
    assert {schedule.rate(step, spent) for step, spent in [(0, 0), (50, 0.5), (99, 1)]} == {0.002}


def test_cosine_falls_from_the_peak_to_the_final_fraction():
    schedule = Schedule(peak=0.01, kind="cosine", final_fraction=0.1)
    assert schedule.rate(10, 0.0) == pytest.approx(0.01)
    assert schedule.rate(10, 0.5) == pytest.approx(0.01 * (0.1 + 0.9 * 0.5))
    assert schedule.rate(10, 1.0) == pytest.approx(0.001)
    assert schedule.rate(10, 1.7) == pytest.approx(0.001)  # past the budget: stays at the end
    rates = [schedule.rate(10, spent / 10) for spent in range(11)]
    assert rates == sorted(rates, reverse=True)


def test_budget_spent_follows_the_nearest_limit():
    spent = budget_spent(
        step=50, seconds=300, epochs_done=1, max_steps=1000, max_minutes=10, epochs=20
    )
    assert spent == pytest.approx(0.5)  # 5 of 10 minutes beats 50 of 1000 steps and 1 of 20
    assert budget_spent(
        step=50, seconds=300, epochs_done=1, max_steps=0, max_minutes=0, epochs=4
    ) == pytest.approx(0.25)
    assert (
        budget_spent(step=5000, seconds=0, epochs_done=0, max_steps=100, max_minutes=0, epochs=0)
        == 1.0
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "linear"},
        {"peak": 0.0},
        {"warmup_steps": -1},
        {"final_fraction": 1.5},
        {"final_fraction": math.nan},
    ],
)
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        Schedule(**({"peak": 0.001} | kwargs))
