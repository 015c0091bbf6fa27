"""Gradient noise scale, two-batch estimator (McCandlish et al. 2018, App. A.1; docs/science/scaling-laws.md §2).

With G_B a batch-MEAN gradient, E|G_B|² = |G|² + tr(Σ)/B. From gradients of a small and a big batch
taken at the same parameters (here: the first `small` examples of the step's batch, and the whole batch):
    |G|²_est = (B_big·|G_big|² − B_small·|G_small|²)/(B_big − B_small)
    S_est    = (|G_small|² − |G_big|²)/(1/B_small − 1/B_big)          (S = tr Σ)
Single-step values are noisy and can be negative, so numerator and denominator are averaged separately
(exponential moving averages) before dividing: B_simple = EMA(S_est)/EMA(|G|²_est).
"""

from __future__ import annotations

import math

import torch

from optlab.errors import OptlabError
from optlab.probes.probe import Probe, ProbeContext


def two_batch_estimates(small_norm_sq: float, big_norm_sq: float, small: int, big: int) -> tuple[float, float]:
    """Unbiased single-pair estimates (|G|²_est, S_est) from |G_small|² and |G_big|² at the same parameters."""
    squared_norm = (big * big_norm_sq - small * small_norm_sq) / (big - small)
    trace = (small_norm_sq - big_norm_sq) / (1 / small - 1 / big)
    return squared_norm, trace


class NoiseScaleProbe(Probe):
    """`probes.noise_scale`: at each probe step, the big batch is the step's batch (its gradient before
    clipping), the small one its first `small_batch` examples (default: a quarter of the micro-batch)."""

    name = "noise_scale"

    def __init__(self, context: ProbeContext, small_batch: int | None, decay: float):
        if context.absorbing:
            raise OptlabError("probes.noise_scale needs the step's whole gradient, which an optimizer that absorbs "
                              "accumulation never forms; set optimizer.accumulation_steps: 1")
        training = context.config.training
        micro_batch = training.accumulation()[1]
        small_batch = min(small_batch or max(1, micro_batch // 4), micro_batch)
        big_batch = training.batch_size
        if not 0 < small_batch < big_batch:
            raise OptlabError(f"probes.noise_scale_small_batch ({small_batch}) must be smaller than "
                              f"training.batch_size ({big_batch}); lower it or raise the batch size")
        self.context = context
        self.small, self.big, self.decay = small_batch, big_batch, decay
        self.squared_norm_average = self.trace_average = None
        self.row: dict[str, float] = {}

    def after_backward(self, batch) -> None:
        model = self.context.model
        big = sum(p.grad.double().pow(2).sum() for p in model.parameters() if p.grad is not None).item()
        with self.context.autocast:
            small = self.small_batch_gradient_norm_sq(model, self.context.forward, batch)
        self.row = self.update(small, big)

    def measure(self, step: int, row: dict) -> dict:
        return self.row

    def state_dict(self) -> dict:
        return {"squared_norm_average": self.squared_norm_average, "trace_average": self.trace_average}

    def load_state_dict(self, state: dict) -> None:
        self.squared_norm_average, self.trace_average = state.get("squared_norm_average"), state.get("trace_average")

    def small_batch_gradient_norm_sq(self, model, forward, windows: torch.Tensor) -> float:
        """|G_small|² from the first `small` examples, leaving the parameters' .grad as they were."""
        parameters = [p for p in model.parameters() if p.requires_grad]
        saved = [p.grad for p in parameters]
        for param in parameters:
            param.grad = None
        forward(windows[: self.small]).backward()
        norm_sq = sum(p.grad.double().pow(2).sum() for p in parameters if p.grad is not None).item()
        for param, grad in zip(parameters, saved):
            param.grad = grad
        return norm_sq

    def update(self, small_norm_sq: float, big_norm_sq: float) -> dict[str, float]:
        squared_norm, trace = two_batch_estimates(small_norm_sq, big_norm_sq, self.small, self.big)
        if self.squared_norm_average is None:
            self.squared_norm_average, self.trace_average = squared_norm, trace
        else:
            self.squared_norm_average = self.decay * self.squared_norm_average + (1 - self.decay) * squared_norm
            self.trace_average = self.decay * self.trace_average + (1 - self.decay) * trace
        b_simple = self.trace_average / self.squared_norm_average if self.squared_norm_average > 0 else math.nan
        return {"noise_scale.grad_norm_sq": self.squared_norm_average, "noise_scale.trace_cov": self.trace_average,
                "noise_scale.b_simple": b_simple}
