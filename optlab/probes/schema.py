"""The `probes` section: which probes run and how often (torch-free; the probes live beside it)."""

from __future__ import annotations

from typing import Optional

from pydantic import Field, model_validator

from optlab.fields import Beta, NonNegativeInt, PositiveInt, Strict

# Token-frequency buckets of the embedding probe (docs/science/embedding-drift.md §6), by the rank fraction
# r/V of a token: (lo, hi]. An entry is "saturated" when |w|·λ ≥ SATURATION_LEVEL (pinned near ±1/λ).
FREQUENCY_BUCKETS = {"frequent": (0.0, 0.05), "mid": (0.05, 0.5), "rare": (0.5, 1.0)}
SATURATION_LEVEL = 0.9


class SampledNoiseScaleConfig(Strict):
    """Noise scales from fresh training examples at fixed parameters (probes/sampled_noise_scale.py;
    docs/science/scaling-laws.md §2, Exp D (1)–(3)): per-example gradients of `examples` examples give tr Σ,
    |G|² and B_simple; `two_batch_repeats` (small, big) batch pairs give the two-batch B_simple (0: skip);
    `hessian_examples` of those gradients and Hessian-vector products of the mean loss over
    `hessian_batch` examples give B_noise = tr(HΣ)/(GᵀHG) (0: skip). Measured at θ_0 (in summary.json's
    `initial_metrics`) and then at the first probe step where eval_loss ≤ each level of `at_eval_loss`;
    with no levels, at every probe step."""

    examples: int = Field(1024, ge=2)
    two_batch_repeats: NonNegativeInt = 100
    two_batch_small: PositiveInt = 8
    two_batch_big: PositiveInt = 256
    hessian_examples: NonNegativeInt = 200
    hessian_batch: PositiveInt = 8192
    at_eval_loss: list[float] = []

    @model_validator(mode="after")
    def _consistent_sizes(self):
        if self.two_batch_repeats and self.two_batch_small >= self.two_batch_big:
            raise ValueError(f"two_batch_small ({self.two_batch_small}) must be smaller than two_batch_big "
                             f"({self.two_batch_big})")
        if self.hessian_examples > self.examples:
            raise ValueError(f"hessian_examples ({self.hessian_examples}) can be at most examples ({self.examples}): "
                             "they are the first of the per-example gradients")
        return self


class ProbesConfig(Strict):
    """Which probes run, and how often (every `every` optimizer steps, plus the first and the last).

    `eval_examples` > 0 logs `eval_loss`: the mean loss over that many examples of the held-out split,
    drawn once at the start (the same examples at every probe step, whatever the batch size).
    `embedding` logs the drift statistics of the model's token embedding (probes/embedding.py), `updates`
    the update and parameter RMS per parameter kind (probes/updates.py). `loss_change` logs the measured
    loss change of the step on its own batch against the first-order prediction g·Δθ
    (probes/first_order.py). `adam_curvature` logs the slope of log √v̂ against log h over the second half
    of training, for Adam (probes/curvature.py). `noise_scale` logs the two-batch gradient-noise-scale
    estimate (probes/noise_scale.py): the small batch is the first `noise_scale_small_batch` examples of
    the step's batch (default: a quarter), the estimates averaged with decay `noise_scale_decay` over
    probe steps. `sampled_noise_scale` measures the noise scales from per-example gradients and
    Hessian-vector products (see SampledNoiseScaleConfig)."""

    every: PositiveInt = 50
    eval_examples: NonNegativeInt = 0
    embedding: bool = True
    updates: bool = True
    loss_change: bool = False
    adam_curvature: bool = False
    noise_scale: bool = False
    noise_scale_small_batch: Optional[PositiveInt] = None
    noise_scale_decay: Beta = 0.9
    sampled_noise_scale: Optional[SampledNoiseScaleConfig] = None

    @model_validator(mode="after")
    def _levels_need_eval_loss(self):
        if self.sampled_noise_scale and self.sampled_noise_scale.at_eval_loss and not self.eval_examples:
            raise ValueError("sampled_noise_scale.at_eval_loss reads eval_loss: set probes.eval_examples > 0")
        return self
