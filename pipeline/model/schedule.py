"""The training budget and the learning rate over it: warm-up, then constant or a cosine decay.

One ``Budget`` answers both questions the trainer asks, "is training over, and by which limit?"
and "how much of the budget is spent?", so the loop and the schedule can never disagree about
where training ends. Limits count epochs and steps; ``max_minutes`` is an opt-in wall-clock cap,
and a run it ends is machine-dependent (the trainer records that it was cut).

The cosine decay is measured against whichever limit is closest to being spent, so it ends where
training will end. In our CPU budgets the model is still learning steeply when the budget ends
and the decay cost more than it gave (README, Performance), so ``constant`` is the default and
``train.ema_decay`` does the smoothing instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipeline.config import TrainSettings


@dataclass(frozen=True)
class Budget:
    epochs: int
    max_steps: int = 0  # 0: no limit
    max_minutes: float = 0.0  # 0: no limit

    @classmethod
    def of(cls, settings: TrainSettings) -> Budget:
        return cls(settings.epochs, settings.max_steps, settings.max_minutes)

    def ended_by(self, *, step: int, seconds: float, epochs_done: int) -> str | None:
        """The limit that ends training at this point ('epochs', 'steps' or 'minutes'), if any;
        ``epochs_done`` counts whole epochs, so mid-epoch only steps and minutes can end it."""
        if epochs_done >= self.epochs:
            return "epochs"
        if self.max_steps and step >= self.max_steps:
            return "steps"
        if self.max_minutes and seconds >= 60 * self.max_minutes:
            return "minutes"
        return None

    def spent(self, *, step: int, seconds: float, epochs_done: float) -> float:
        """The fraction (0..1) of the nearest limit used; ``epochs_done`` may be fractional."""
        fractions = [epochs_done / self.epochs]
        if self.max_steps:
            fractions.append(step / self.max_steps)
        if self.max_minutes:
            fractions.append(seconds / (60 * self.max_minutes))
        return min(max(fractions), 1.0)


@dataclass(frozen=True)
class Schedule:
    peak: float  # the rate after warm-up
    kind: str = "constant"  # constant | cosine
    warmup_steps: int = 0
    final_fraction: float = 0.05  # the cosine ends at peak * final_fraction

    @classmethod
    def of(cls, settings: TrainSettings) -> Schedule:
        return cls(
            settings.learning_rate,
            settings.lr_schedule,
            settings.warmup_steps,
            settings.final_lr_fraction,
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
