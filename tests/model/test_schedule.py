"""The training budget and the learning rate over it: warm-up, cosine decay to the nearest limit."""

from __future__ import annotations

import pytest

from pipeline.model.schedule import Budget, Schedule


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
    budget = Budget(epochs=20, max_steps=1000, max_minutes=10)
    spent = budget.spent(step=50, seconds=300, epochs_done=1)
    assert spent == pytest.approx(0.5)  # 5 of 10 minutes beats 50 of 1000 steps and 1 of 20
    assert Budget(epochs=4).spent(step=50, seconds=300, epochs_done=1) == pytest.approx(0.25)
    assert Budget(epochs=1, max_steps=100).spent(step=5000, seconds=0, epochs_done=0) == 1.0


def test_the_limit_that_ends_training_is_named():
    budget = Budget(epochs=3, max_steps=100, max_minutes=2)
    assert budget.ended_by(step=99, seconds=119, epochs_done=2) is None
    assert budget.ended_by(step=100, seconds=0, epochs_done=0) == "steps"
    assert budget.ended_by(step=5, seconds=120, epochs_done=0) == "minutes"
    assert budget.ended_by(step=5, seconds=0, epochs_done=3) == "epochs"
    # no step or time limit: only whole epochs end it
    assert Budget(epochs=3).ended_by(step=10**9, seconds=1e9, epochs_done=2) is None
