"""Learning-rate schedules as pure functions of the optimizer step (0-based), returning a multiplier of
the base lr. Where the decay is lr-coupled (AdamW, Lion, Tiger) the multiplier scales the decay too."""

from __future__ import annotations

import math

from optlab.config import ScheduleConfig


def lr_multiplier(schedule: ScheduleConfig, step: int, total_steps: int) -> float:
    """Linear warmup over `warmup_steps` (reaching 1 at the end of warmup), then constant, cosine or
    linear decay from 1 to `min_lr_ratio` at the last step, or an inverse decay with t counted from the
    end of warmup and T = `half_life` (other-effects.md §3, Su's D_t for a slowing / a constant
    convergence rate):  inverse_time 1/(1 + t/T),  inverse_square 1/(1 + (√2 − 1)·t/T)²."""
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
