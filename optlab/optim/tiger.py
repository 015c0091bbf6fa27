"""Tiger: Su 2023, "Tiger: a tight-fisted optimizer" (kexue.fm/archives/9512; bojone/tiger).

Basic update (optimizers.md §2.1), Lion with β1 = β2 = β and the sign of the NEW momentum:
    m_t = β·m_{t−1} + (1 − β)·g_t
    θ_t = θ_{t−1} − η_t·[sign(m_t) + λ·θ_{t−1}]

Per-parameter rules (§2.3, `parameter_scaling=True`), chosen by the param group's `kind`:
    bias, norm            η_t = 0.5·α_t             λ = 0
    embedding             η_t = α_t·RMS_row(θ_{t−1}) (one scale per row)
    matrix, head          η_t = α_t·RMS(θ_{t−1})     (one scale per tensor)
so each step moves an entry by about α relative to its tensor's own scale. A matrix whose RMS is 0
(zero-initialised) would never move; optlab floors its scale at sqrt(1/fan_in) and warns once. An
all-zero embedding row (e.g. padding) stays frozen, as in the reference.

NaN/inf guard (§2.5, `nan_guard=True`): a tensor whose gradient holds a non-finite value keeps its
momentum and shrinks toward its centre c: θ ← (θ − c)·s + c, with c = 1 for norm gains, 0 otherwise.
The reference tests NaN only; optlab tests NaN and ±inf.

Gradient accumulation absorbed into the momentum (§2.4, kexue.fm/archives/8634), k =
`accumulation_steps`: `step()` is called once per micro-batch. As in any accumulation loop the loss
is divided by k, so the gradient it sees is g_t/k (g_t the micro-batch mean gradient, as in §2.4).
With the micro-step counter t (0-based)
    m ← b1·m + (1 − β)·(g_t/k),   b1 = β if t mod k = 0 else 1
    θ moves only when (t + 1) mod k = 0
so after k micro-steps m = β·m_old + (1 − β)·mean(g_1..g_k): exactly standard accumulation, with no
gradient buffer. The counter lives in the param group (`micro_step`) and is saved with the state.
"""

from __future__ import annotations

import math
import warnings

import torch

from optlab.optim._common import gradients_with_state


class Tiger(torch.optim.Optimizer):
    def __init__(
        self,
        params,
        lr: float = 1e-3,
        beta: float = 0.965,
        weight_decay: float = 0.01,
        parameter_scaling: bool = True,
        nan_guard: bool = True,
        shrink_ratio: float = 0.99,
        accumulation_steps: int = 1,
    ):
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if not 0 <= beta < 1:
            raise ValueError(f"beta must lie in [0, 1), got {beta}")
        defaults = dict(
            lr=lr, beta=beta, weight_decay=weight_decay, parameter_scaling=parameter_scaling,
            nan_guard=nan_guard, shrink_ratio=shrink_ratio, kind="matrix",
            accumulation_steps=accumulation_steps, micro_step=0,
        )
        super().__init__(params, defaults)
        self.absorbs_accumulation = accumulation_steps > 1

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, momenta = gradients_with_state(self, group, "momentum")
            if not params:
                continue
            micro_step, accumulation_steps = group["micro_step"], group["accumulation_steps"]
            group["micro_step"] = micro_step + 1
            if group["nan_guard"]:
                params, grads, momenta = self._shrink_non_finite(group, params, grads, momenta)
                if not params:
                    continue
            beta, weight_decay = group["beta"], group["weight_decay"]
            if group["parameter_scaling"] and group["kind"] in ("bias", "norm"):
                weight_decay = 0.0
            if micro_step % accumulation_steps == 0:
                torch._foreach_mul_(momenta, beta)
            torch._foreach_add_(momenta, grads, alpha=1 - beta)
            if (micro_step + 1) % accumulation_steps:
                continue  # not the last micro-batch of the cycle: only the momentum moves
            updates = torch._foreach_sign(momenta)
            if weight_decay:
                torch._foreach_add_(updates, params, alpha=weight_decay)
            if group["parameter_scaling"]:
                for param, update in zip(params, updates):
                    update.mul_(self._relative_scale(param, group["kind"]))
            torch._foreach_add_(params, updates, alpha=-group["lr"])
        return loss

    def _relative_scale(self, param: torch.Tensor, kind: str):
        """The factor that turns α into this tensor's lr (§2.3), from the pre-update θ."""
        if kind in ("bias", "norm") or param.ndim < 2:
            return 0.5
        if kind == "embedding":
            return param.float().pow(2).mean(dim=-1, keepdim=True).sqrt().to(param.dtype)
        rms = param.float().pow(2).mean().sqrt()
        if rms == 0:
            fan_in = param[0].numel()
            state = self.state[param]
            if not state.get("warned_zero_rms"):
                warnings.warn(
                    f"Tiger: a {tuple(param.shape)} matrix has RMS 0 and would never move; "
                    f"its scale is floored at sqrt(1/fan_in) = {math.sqrt(1 / fan_in):.3g}",
                    stacklevel=3,
                )
                state["warned_zero_rms"] = True
            return math.sqrt(1 / fan_in)
        return rms.to(param.dtype)

    def _shrink_non_finite(self, group, params, grads, momenta):
        """Apply the guard; return the (params, grads, momenta) that take a normal step."""
        finite = torch.isfinite(torch.stack(torch._foreach_norm(grads))).tolist()
        if all(finite):
            return params, grads, momenta
        ratio = group["shrink_ratio"]
        centre = 1.0 if group["kind"] == "norm" else 0.0
        for param, ok in zip(params, finite):
            if not ok:
                param.sub_(centre).mul_(ratio).add_(centre)
        keep = [i for i, ok in enumerate(finite) if ok]
        return [params[i] for i in keep], [grads[i] for i in keep], [momenta[i] for i in keep]
