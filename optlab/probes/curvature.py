"""Adam's second moment against the Hessian diagonal (docs/science/other-effects.md §2; Su, kexue.fm/archives/10588).

Near θ*, g ≈ H(θ − θ*). If θ circles θ* (θ − θ* ~ N(0, σ²I)), E[g⊙g] = σ²·diag(H²), so √v ∝ |h|:
slope 1 of log √v̂_i against log |h_i|. Minibatch noise at the noise floor gives v ∝ h (slope ½); additive
noise independent of H gives slope 0. The probe averages √v̂ = sqrt(v/(1 − β₂ᵗ)) over every step of
the second half of training, over all parameters Adam updates, and logs the OLS slope of
log(mean √v̂_i) on log |h_i| as `adam_sqrt_v_slope`.

h is the model's `hessian_diagonal` where it is known (quadratic, linear regression: the model protocol,
optlab/models); otherwise it is estimated once, at the last step (on the held-out examples if the run has
them, else on the step's batch), by Hutchinson's estimator diag H ≈ mean over Rademacher z of z ⊙ Hz
(Bekas, Kokiopoulou & Saad 2007) with Hessian-vector products, and the Spearman rank correlation of √v̂
with |diag H| is logged too (`adam_sqrt_v_rank_correlation`: it cannot tell v ∝ H² from v ∝ |H|).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from optlab.errors import OptlabError
from optlab.probes.probe import Probe, ProbeContext

HUTCHINSON_SAMPLES = 200


def hutchinson_diagonal(loss: Callable[[], torch.Tensor], params: list[torch.Tensor], samples: int,
                        generator: torch.Generator) -> torch.Tensor:
    """Flattened estimate of diag ∇²loss over `params`: mean over Rademacher z of z ⊙ Hz."""
    grads = torch.autograd.grad(loss(), params, create_graph=True)
    total = torch.zeros(sum(p.numel() for p in params), dtype=torch.float64)
    for _ in range(samples):
        probes = [torch.randint(0, 2, p.shape, generator=generator).to(p.dtype) * 2 - 1 for p in params]
        products = torch.autograd.grad(grads, params, grad_outputs=probes, retain_graph=True)
        total += torch.cat([(z * hz).flatten() for z, hz in zip(probes, products)]).double().cpu()
    return total / samples


def rank_correlation(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman's ρ: the Pearson correlation of the ranks (ties broken by position)."""
    ranks = [v.argsort().argsort().double() for v in (x, y)]
    return float(torch.corrcoef(torch.stack(ranks))[0, 1])


class AdamCurvatureProbe(Probe):
    name = "adam_curvature"

    def __init__(self, context: ProbeContext):
        optimizers, total_steps = context.optimizers, context.config.training.steps
        self.watched = [(g, p) for o in optimizers for g in o.param_groups for p in g["params"] if "betas" in g]
        self.optimizers, self.context = optimizers, context
        if not self.watched:
            raise OptlabError("probes.adam_curvature needs optimizer.name: adam or adamw")
        known = context.capabilities.hessian_diagonal
        self.curvature = None if known is None else known.double().flatten().cpu()
        self.estimated = False
        self.sqrt_v_sum = torch.zeros(sum(p.numel() for _, p in self.watched), dtype=torch.float64)
        if self.curvature is not None and len(self.curvature) != len(self.sqrt_v_sum):
            raise OptlabError("probes.adam_curvature: the model's hessian_diagonal does not cover the parameters Adam updates")
        self.start_step = total_steps // 2
        self.count = 0

    def after_backward(self, batch) -> None:
        self.batch = batch

    def after_step(self, step: int) -> None:
        """Accumulate √v̂ after the optimizer step `step` (0-based) of the second half."""
        if step < self.start_step:
            return
        parts = []
        for group, param in self.watched:
            state = next(o.state[param] for o in self.optimizers if param in o.state)
            correction = 1 - group["betas"][1] ** float(state["step"])
            parts.append((state["exp_avg_sq"].double().flatten().cpu() / correction).sqrt())
        self.sqrt_v_sum += torch.cat(parts)
        self.count += 1

    def measure(self, step: int, row: dict) -> dict:
        context = self.context
        if self.curvature is None and step == context.config.training.steps - 1:  # Hutchinson, once
            examples = context.eval_windows if context.eval_windows is not None else self.batch
            generator = torch.Generator().manual_seed(context.config.training.seed)
            self.curvature = hutchinson_diagonal(lambda: context.forward(examples), [p for _, p in self.watched],
                                                 HUTCHINSON_SAMPLES, generator)
            self.estimated = True
        return self.metrics()

    def state_dict(self) -> dict:
        return {"sqrt_v_sum": self.sqrt_v_sum, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.sqrt_v_sum, self.count = state["sqrt_v_sum"], state["count"]

    def metrics(self) -> dict[str, float]:
        """The same keys at every call (NaN until measurable), so that metrics.csv has their columns."""
        empty = {"adam_sqrt_v_slope": math.nan}
        if self.estimated or self.curvature is None:
            empty["adam_sqrt_v_rank_correlation"] = math.nan
        if not self.count or self.curvature is None:
            return empty
        sqrt_v, curvature = self.sqrt_v_sum / self.count, self.curvature.abs()
        keep = (curvature > 0) & (sqrt_v > 0)
        x, y = curvature[keep].log(), sqrt_v[keep].log()
        x, y = x - x.mean(), y - y.mean()
        slope = float((x * y).sum() / x.pow(2).sum())
        metrics = {"adam_sqrt_v_slope": slope if math.isfinite(slope) else math.nan}
        if self.estimated:
            metrics["adam_sqrt_v_rank_correlation"] = rank_correlation(sqrt_v[keep], curvature[keep])
        return metrics
