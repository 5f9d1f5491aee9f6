"""Learning-rate schedule for the train stage: linear warm-up, then a cosine decay to the budget.

The usual remedy for a run that ends at a noisy point of a constant rate is to anneal the rate
over the budget. The decay is measured against whichever budget limit (steps, wall-clock minutes
or epochs) is closest to being spent, so it ends where training will end. With a wall-clock
budget the rate at a given step therefore depends on how fast the machine is: the same
nondeterminism the budget itself has. In our 12-minute CPU budget the model is still learning
steeply when time runs out and the decay cost more than it gave (README, Performance), so
``constant`` is the default and ``train.ema_decay`` does the smoothing instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class Schedule:
    peak: float  # the rate after warm-up
    kind: str = "constant"
    warmup_steps: int = 0
    final_fraction: float = 0.05  # the cosine ends at peak * final_fraction

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {SCHEDULES}, got {self.kind!r}")
        if self.peak <= 0 or self.warmup_steps < 0 or not 0 <= self.final_fraction <= 1:
            raise ValueError(
                "need learning_rate > 0, warmup_steps >= 0 and 0 <= final_lr_fraction <= 1, "
                f"got {self.peak}, {self.warmup_steps}, {self.final_fraction}"
            )

    def rate(self, step: int, spent: float) -> float:
        """The rate for optimizer step ``step`` (0-based) with ``spent`` (0..1) of the budget
        used; warm-up always ramps over the first ``warmup_steps`` steps."""
        if step < self.warmup_steps:
            return self.peak * (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return self.peak
        cosine = 0.5 * (1 + math.cos(math.pi * min(max(spent, 0.0), 1.0)))
        return self.peak * (self.final_fraction + (1 - self.final_fraction) * cosine)


def budget_spent(
    *,
    step: int,
    seconds: float,
    epochs_done: float,
    max_steps: int,
    max_minutes: float,
    epochs: int,
) -> float:
    """The fraction (0..1) of the nearest limit used; a limit of 0 means none."""
    fractions = [epochs_done / epochs] if epochs else []
    if max_steps:
        fractions.append(step / max_steps)
    if max_minutes:
        fractions.append(seconds / (60 * max_minutes))
    return min(max(fractions, default=0.0), 1.0)
