"""Amos: Tian & Parikh 2022, "Amos: An Adam-style Optimizer with Adaptive Weight Decay towards
Model-Oriented Scale" (arXiv 2210.11693; google-research/jestimator); docs/science/optimizers.md §5.

Per tensor, with global lr ξ, the tensor's model-oriented scale η (expected magnitude of its trained
entries) and a step count t (incremented first):
    g2 = mean of g² over the reduced axes
    v  ← β·v + (1 − β)·g2
    r  = (1 − β^t) / max(v, ε)                      (= 1/v̂)
    c  = 1/sqrt(1 + ζ·sqrt(ξ)·b)
    γ  = sqrt(fr)·c·ξ²·r·g2                         (≈ ξ² on average)
    a  = ξ·η
    d  = 1/(1 + ζ·sqrt(a)·b)
    Δθ = fr·d·(−a·sqrt(r)·g − ½·γ·θ)               (Adam-like step + adaptive decay toward 0)
    b  ← b + γ·(fr + b)
    optional: Δθ ← μ·Δθ_prev + (1 − μ)·Δθ  (EMA of updates);   θ ← θ + Δθ
d_t and ½·d_t·γ_t form Amos's implied lr / decay schedule; `metrics()` reports them (logged at probe steps).

State shape (`state_shape`): `reduced` keeps v and b per output row for ≥ 2-D tensors (shape (out, 1,
...): O(out) memory, not O(params)) and scalar for 1-D tensors; `full` keeps them elementwise; `scalar`
keeps one v and b per tensor (pytorch_optimizer's Amos). State is float32 or wider.

η per tensor (`eta_rule`): `init_rms` (default) uses RMS(θ_0), the init scale, and 0.5 where θ_0 = 0
and for biases and norm gains; `fan_in` uses jestimator's README rules (biases/norms 0.5, hidden
matrices sqrt(2/fan_in), head sqrt(1/fan_in), embeddings sqrt(1/width)). `eta_overrides` sets η by
parameter kind. The kind comes from the param group (`kind`, as optlab.optim.parameter_groups(model)
sets it); a group without one is read tensor by tensor, ≥ 2-D tensors as matrices and the others as
biases (Amos warns when that matters: `fan_in` or `eta_overrides`).
"""

from __future__ import annotations

import math
import warnings

import torch

from optlab.optim._common import (check, check_beta, check_choice, check_non_negative, check_positive,
                                  check_real_parameters, closure_loss, dense_gradient, state_dtype)

EPSILON = 2.0 ** -125


def model_scale(param: torch.Tensor, kind: str, rule: str) -> float:
    """η for one tensor, by the rules in the module docstring."""
    if kind in ("bias", "norm") or param.ndim < 2:
        return 0.5
    fan_in = param[0].numel()
    if rule == "fan_in":
        if kind == "head":
            return math.sqrt(1 / fan_in)
        if kind == "embedding":
            return math.sqrt(1 / param.shape[-1])
        return math.sqrt(2 / fan_in)
    rms = param.float().pow(2).mean().sqrt().item()
    return rms if rms > 0 else math.sqrt(2 / fan_in)


def reduced_axes(param: torch.Tensor, state_shape: str) -> tuple[int, ...]:
    if state_shape == "full":
        return ()
    if state_shape == "scalar" or param.ndim < 2:
        return tuple(range(param.ndim))
    return tuple(range(1, param.ndim))


class Amos(torch.optim.Optimizer):
    """Amos (arXiv 2210.11693): an Adam-like step scaled to each tensor's model-oriented scale η, with an
    adaptive decay toward 0 and an implied lr schedule (the equations are in the module docstring). lr ξ > 0,
    beta in [0, 1), decay_speed ζ > 0, finetune_rate > 0, initial_b ≥ 0, momentum in [0, 1) (an EMA of the
    updates), clip_value > 0 or None, state_shape reduced | full | scalar, eta_rule init_rms | fan_in."""

    def __init__(
        self,
        params,
        lr: float = 0.01,
        beta: float = 0.999,
        decay_speed: float = 0.25,
        finetune_rate: float = 1.0,
        initial_b: float = 0.0,
        momentum: float = 0.0,
        clip_value: float | None = None,
        state_shape: str = "reduced",
        eta_rule: str = "init_rms",
        eta_overrides: dict | None = None,
    ):
        check_positive("lr", lr)
        check_beta("beta", beta)
        check_positive("decay_speed", decay_speed)
        check_positive("finetune_rate", finetune_rate)
        check_non_negative("initial_b", initial_b)
        check_beta("momentum", momentum)
        check("clip_value", clip_value, clip_value is None or clip_value > 0, "positive or None")
        check_choice("state_shape", state_shape, ("reduced", "full", "scalar"))
        check_choice("eta_rule", eta_rule, ("init_rms", "fan_in"))
        defaults = dict(lr=lr, beta=beta, decay_speed=decay_speed, finetune_rate=finetune_rate, initial_b=initial_b,
                        momentum=momentum, clip_value=clip_value, state_shape=state_shape, eta_rule=eta_rule,
                        eta_overrides=dict(eta_overrides or {}), weight_decay=0.0, kind=None)
        super().__init__(params, defaults)
        check_real_parameters(self)
        if any(group["weight_decay"] for group in self.param_groups):
            raise ValueError("Amos has its own adaptive decay toward 0: give its parameters no weight_decay")
        if any(group["kind"] is None and (group["eta_rule"] == "fan_in" or group["eta_overrides"])
               for group in self.param_groups):
            warnings.warn("Amos: param groups without `kind`: ≥ 2-D tensors are taken as hidden matrices, the others "
                          "as biases; pass optlab.optim.parameter_groups(model) to give embeddings, heads and norm "
                          "gains their own η", stacklevel=2)

    def _init_state(self, param: torch.Tensor, group: dict) -> dict:
        state = self.state[param]
        if not state:
            kind = group["kind"] or ("matrix" if param.ndim >= 2 else "bias")
            axes = reduced_axes(param, group["state_shape"])
            shape = [1 if i in axes else size for i, size in enumerate(param.shape)]
            dtype = state_dtype(param)
            state["step"] = 0
            state["eta"] = group["eta_overrides"].get(kind, model_scale(param, kind, group["eta_rule"]))
            state["v"] = torch.zeros(shape, dtype=dtype, device=param.device)
            state["b"] = torch.full(shape, float(group["initial_b"]), dtype=dtype, device=param.device)
            if group["momentum"]:
                state["update_average"] = torch.zeros_like(param, dtype=dtype)
        return state

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            xi, beta, zeta, fr = group["lr"], group["beta"], group["decay_speed"], group["finetune_rate"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self._init_state(param, group)
                state["step"] += 1
                v, b = state["v"], state["b"]
                grad = dense_gradient(self, param).to(v.dtype)
                if group["clip_value"] is not None:
                    grad = grad.clamp(-group["clip_value"], group["clip_value"])
                axes = reduced_axes(param, group["state_shape"])
                g2 = grad.pow(2).mean(dim=axes, keepdim=True) if axes else grad.pow(2)
                v.mul_(beta).add_(g2, alpha=1 - beta)
                r = (1 - beta ** state["step"]) / v.clamp(min=EPSILON)
                c = torch.rsqrt(1 + zeta * math.sqrt(xi) * b)
                gamma = math.sqrt(fr) * c * xi**2 * r * g2
                a = xi * state["eta"]
                d = 1 / (1 + zeta * math.sqrt(a) * b)
                update = fr * d * (-a * r.sqrt() * grad - 0.5 * gamma * param.to(v.dtype))
                b.add_(gamma * (fr + b))
                if group["momentum"]:
                    update = state["update_average"].mul_(group["momentum"]).add_(update, alpha=1 - group["momentum"])
                param.add_(update.to(param.dtype))
                state["last_d"], state["last_decay"] = d.mean(), (0.5 * d * gamma).mean()  # tensors: no sync here
                state["last_b"], state["last_gr"] = b.mean(), (r * g2).mean()
        return loss

    def metrics(self) -> dict[str, float]:
        """Mean over tensors of the last step's d_t (lr factor), ½·d_t·γ_t (per-step decay) b_t (the schedule's state) and g2·r (the
        ratio of the step's g² to its running mean v̂, which drives b; the closed form of §5.3 takes it ≡ 1)."""
        states = [s for s in self.state.values() if "last_d" in s]
        if not states:
            return {}
        return {"amos.d": sum(s["last_d"].item() for s in states) / len(states),
                "amos.decay_per_step": sum(s["last_decay"].item() for s in states) / len(states),
                "amos.b": sum(s["last_b"].item() for s in states) / len(states),
                "amos.g2_over_v": sum(s["last_gr"].item() for s in states) / len(states)}
