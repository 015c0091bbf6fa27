"""Learning-rate schedules: their schema and the multiplier of the base lr as a pure function of the
optimizer step (0-based). Where the decay is lr-coupled (AdamW, Lion, Tiger) the multiplier scales the
decay too. Torch-free."""

from __future__ import annotations

import math
from typing import Literal, Optional

from pydantic import model_validator

from optlab.fields import Fraction, NonNegativeInt, PositiveInt, Strict


class ScheduleConfig(Strict):
    """Learning-rate multiplier as a function of the step: linear warmup, then constant, cosine or linear
    decay to `min_lr_ratio`, or Su's Amos-derived decays (docs/science/other-effects.md §3.4) that halve the
    lr after `half_life` steps: inverse-time 1/(1 + t/T), inverse-square 1/(1 + (√2 − 1)t/T)²."""

    name: Literal["constant", "cosine", "linear", "inverse_time", "inverse_square"] = "constant"
    warmup_steps: NonNegativeInt = 0
    min_lr_ratio: Fraction = 0.0
    half_life: Optional[PositiveInt] = None

    @model_validator(mode="after")
    def _half_life_for_inverse_decays(self):
        if self.name.startswith("inverse_") and self.half_life is None:
            raise ValueError(f"schedule {self.name} needs `half_life`: the step count after which the lr has halved")
        return self


def is_constant(schedule: ScheduleConfig) -> bool:
    """True when lr_multiplier is 1 at every step (no warmup, no decay)."""
    return schedule.name == "constant" and schedule.warmup_steps == 0


def lr_multiplier(schedule: ScheduleConfig, step: int, total_steps: int) -> float:
    """Linear warmup over `warmup_steps` (reaching 1 at the end of warmup), then constant, cosine or
    linear decay from 1 to `min_lr_ratio` at the last step, or an inverse decay with t counted from the
    end of warmup and T = `half_life` (docs/science/other-effects.md §3.4, Su's D_t for a slowing / a
    constant convergence rate):  inverse_time 1/(1 + t/T),  inverse_square 1/(1 + (√2 − 1)·t/T)²."""
    if step < schedule.warmup_steps:
        return (step + 1) / schedule.warmup_steps
    if schedule.name == "constant":
        return 1.0
    if schedule.name == "inverse_time":
        return 1 / (1 + (step - schedule.warmup_steps) / schedule.half_life)
    if schedule.name == "inverse_square":
        return 1 / (1 + (math.sqrt(2) - 1) * (step - schedule.warmup_steps) / schedule.half_life) ** 2
    decay_steps = max(1, total_steps - 1 - schedule.warmup_steps)
    progress = min(1.0, (step - schedule.warmup_steps) / decay_steps)
    shape = 0.5 * (1 + math.cos(math.pi * progress)) if schedule.name == "cosine" else 1 - progress
    return schedule.min_lr_ratio + (1 - schedule.min_lr_ratio) * shape
