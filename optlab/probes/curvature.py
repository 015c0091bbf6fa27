"""Adam's second moment against a known Hessian diagonal (other-effects.md §2; Su, kexue.fm/archives/10588).

Near θ*, g ≈ H(θ − θ*). If θ circles θ* (θ − θ* ~ N(0, σ²I)), E[g⊙g] = σ²·diag(H²), so √v ∝ |h|:
slope 1 of log √v̂_i against log h_i. Minibatch noise at the noise floor gives v ∝ h (slope ½); additive
noise independent of H gives slope 0. The probe averages √v̂ = sqrt(v/(1 − β₂ᵗ)) over every step of
the second half of training and logs the OLS slope of log(mean √v̂_i) on log h_i as `adam_sqrt_v_slope`.
"""

from __future__ import annotations

import math

import torch

from optlab.errors import OptlabError


class AdamCurvatureProbe:
    def __init__(self, model: torch.nn.Module, optimizers: list[torch.optim.Optimizer], total_steps: int):
        if not hasattr(model, "hessian_diagonal"):
            raise OptlabError("probes.adam_curvature needs a model with a known Hessian (model.name: quadratic, or "
                              "linreg on linear-regression data)")
        watched = [(o, g, p) for o in optimizers for g in o.param_groups for p in g["params"] if "betas" in g]
        if len(watched) != 1:
            raise OptlabError("probes.adam_curvature needs optimizer.name: adam or adamw (one parameter tensor)")
        self.optimizer, self.group, self.param = watched[0]
        self.log_curvature = model.hessian_diagonal.double().log().cpu()
        self.start_step = total_steps // 2
        self.sqrt_v_sum = torch.zeros_like(self.log_curvature)
        self.count = 0

    def update(self, step: int) -> None:
        """Call after the optimizer step `step` (0-based)."""
        if step < self.start_step:
            return
        state = self.optimizer.state[self.param]
        correction = 1 - self.group["betas"][1] ** float(state["step"])
        self.sqrt_v_sum += (state["exp_avg_sq"].double().flatten().cpu() / correction).sqrt()
        self.count += 1

    def state_dict(self) -> dict:
        return {"sqrt_v_sum": self.sqrt_v_sum, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.sqrt_v_sum, self.count = state["sqrt_v_sum"], state["count"]

    def metrics(self) -> dict[str, float]:
        if not self.count:
            return {}
        log_sqrt_v = (self.sqrt_v_sum / self.count).log()
        x = self.log_curvature - self.log_curvature.mean()
        slope = float((x * (log_sqrt_v - log_sqrt_v.mean())).sum() / x.pow(2).sum())
        return {"adam_sqrt_v_slope": slope if math.isfinite(slope) else math.nan}
