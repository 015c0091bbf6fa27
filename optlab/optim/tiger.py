"""Tiger: Su 2023, "Tiger: a tight-fisted optimizer" (kexue.fm/archives/9512; bojone/tiger).

Basic update (docs/science/optimizers.md §2.1), Lion with β1 = β2 = β and the sign of the NEW momentum:
    m_t = β·m_{t−1} + (1 − β)·g_t
    θ_t = θ_{t−1} − η_t·[sign(m_t) + λ·θ_{t−1}]

Per-parameter rules (§2.3, `parameter_scaling=True`), chosen by the param group's `kind`:
    bias, norm            η_t = 0.5·α_t             λ = 0
    embedding             η_t = α_t·RMS_row(θ_{t−1}) (one scale per row)
    matrix, head          η_t = α_t·RMS(θ_{t−1})     (one scale per tensor)
so each step moves an entry by about α relative to its tensor's own scale. A group without `kind` (a
plain `model.parameters()`) is read tensor by tensor: ≥ 2-D tensors as matrices, the others as biases
(Tiger warns once); `optlab.optim.parameter_groups(model)` names embeddings, heads and norm gains. A matrix whose RMS is 0
(zero-initialised) would never move; optlab floors its scale at sqrt(1/fan_in) and warns once. An
all-zero embedding row (e.g. padding) stays frozen, as in the reference.

NaN/inf guard (§2.5, `nan_guard=True`): a tensor whose gradient holds a non-finite value keeps its
momentum and shrinks toward its centre c: θ ← (θ − c)·s + c, with c = 1 for norm gains, 0 otherwise.
The reference tests NaN only; optlab tests NaN and ±inf.

Gradient accumulation absorbed into the momentum (§2.4, kexue.fm/archives/8634), k =
`accumulation_steps`: `step()` is called once per micro-batch (optlab's loop does so for any optimizer
whose defaults hold accumulation_steps > 1: optlab/optim/groups.py, `absorbs_accumulation`). As in any accumulation loop the loss
is divided by k, so the gradient it sees is g_t/k (g_t the micro-batch mean gradient, as in §2.4).
With the micro-step counter t (0-based)
    m ← b1·m + (1 − β)·(g_t/k),   b1 = β if t mod k = 0 else 1
    θ moves only when (t + 1) mod k = 0
so after k micro-steps m = β·m_old + (1 − β)·mean(g_1..g_k): exactly standard accumulation, with no
gradient buffer. The counter lives in the param group (`micro_step`) and is saved with the state.

Update every k steps (`update_every` = k, docs/science/other-effects.md §4 variants c/d): the momentum takes every
gradient as usual, m ← β·m + (1 − β)·g, but θ moves only when (t + 1) mod k = 0 (the lr × χ_{t/k} of
Su's generic emulation; with β → β̃ = 1 − (1 − β)/k it approximates accumulation, since β̃^k ≈ β).
"""

from __future__ import annotations

import math
import warnings

import torch

from optlab.optim._common import (check, check_beta, check_non_negative, check_positive, check_real_parameters,
                                  closure_loss, compiled, gradients_with_state, scalar)


def inferred_kind(param: torch.Tensor) -> str:
    """The kind Tiger assumes for a tensor of a group without `kind`."""
    return "matrix" if param.ndim >= 2 else "bias"


def relative_scales(params, kind: str, floors):
    """The factors that turn α into each tensor's lr (§2.3), from the pre-update θ; None for no scaling.

    matrix/head: RMS(θ), or the floor sqrt(1/fan_in) where RMS = 0; embedding: RMS of each row;
    bias/norm: 0.5.
    """
    if kind in ("bias", "norm"):
        return [torch.full((), 0.5, dtype=param.dtype) for param in params]
    if kind == "embedding":
        return [param.pow(2).mean(dim=-1, keepdim=True).sqrt() for param in params]
    norms = torch._foreach_norm(params)
    return [torch.where(norm > 0, norm / param.numel() ** 0.5, floor) for norm, param, floor in zip(norms, params, floors)]


def tiger_update_(params, grads, momenta, lr, weight_decay: float, keep: float, weight: float, apply: bool,
                  kind: str | None, floors):
    """One Tiger micro-step on lists of tensors (in place); `lr` is a 0-dim tensor.

        m ← keep·m + weight·g            keep = β at the start of an accumulation cycle, else 1; weight = 1 − β
        if apply:  θ ← θ − η·s·(sign(m) + λ·θ_{t−1})     s = relative_scales(...) (kind None: s = 1)
    """
    if keep != 1:
        torch._foreach_mul_(momenta, keep)
    torch._foreach_add_(momenta, grads, alpha=weight)
    if not apply:
        return
    updates = torch._foreach_sign(momenta)
    if weight_decay:
        torch._foreach_add_(updates, params, alpha=weight_decay)
    step_sizes = [lr * scale for scale in relative_scales(params, kind, floors)] if kind else [lr] * len(params)
    torch._foreach_addcmul_(params, updates, step_sizes, value=-1)


class Tiger(torch.optim.Optimizer):
    """Tiger (kexue.fm/archives/9512). Per step, with momentum m (zeros at the start):

        m ← β·m + (1 − β)·g;   θ ← θ − η_kind·(sign(m) + λ_kind·θ)

    with, under `parameter_scaling`, η = 0.5α and λ = 0 for biases and norm gains, α·RMS(row) for
    embeddings, α·RMS(θ) for matrices and heads (the param group's `kind`). lr α > 0, beta in [0, 1),
    weight_decay λ ≥ 0, shrink_ratio in (0, 1] (the NaN/inf guard), accumulation_steps ≥ 1 (micro-batches
    folded into m; call step() after each), update_every ≥ 1 (move θ every k-th step). See the module
    docstring for each rule. β is kept in each param group as `betas = (β,)`, Adam's β1 slot, so the
    schedulers that cycle momentum (OneCycleLR, CyclicLR) can drive it."""

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
        update_every: int = 1,
        compiled: bool = False,
    ):
        check_positive("lr", lr)
        check_beta("beta", beta)
        check_non_negative("weight_decay", weight_decay)
        check("shrink_ratio", shrink_ratio, 0 < shrink_ratio <= 1, "in (0, 1]")
        check("accumulation_steps", accumulation_steps, isinstance(accumulation_steps, int) and accumulation_steps >= 1,
              "an integer ≥ 1")
        check("update_every", update_every, isinstance(update_every, int) and update_every >= 1, "an integer ≥ 1")
        defaults = dict(
            lr=lr, betas=(beta,), weight_decay=weight_decay, parameter_scaling=parameter_scaling,
            nan_guard=nan_guard, shrink_ratio=shrink_ratio, kind=None,
            accumulation_steps=accumulation_steps, update_every=update_every, micro_step=0, compiled=compiled,
        )
        super().__init__(params, defaults)
        check_real_parameters(self)
        if parameter_scaling and any(group["kind"] is None for group in self.param_groups):
            warnings.warn("Tiger: param groups without `kind`: ≥ 2-D tensors are taken as matrices (lr × RMS(θ)), the "
                          "others as biases (lr × 0.5, no decay); pass optlab.optim.parameter_groups(model) to give "
                          "embeddings (lr × row RMS), heads and norm gains their own rules", stacklevel=2)
        self._scale_floors: dict[torch.Tensor, float] = {}

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            params, grads, momenta = gradients_with_state(self, group, "momentum")
            if not params:
                continue
            micro_step, accumulation_steps = group["micro_step"], group["accumulation_steps"]
            update_period = accumulation_steps * group["update_every"]
            group["micro_step"] = micro_step + 1
            if group["nan_guard"]:
                params, grads, momenta = self._shrink_non_finite(group, params, grads, momenta)
                if not params:
                    continue
            update = compiled(tiger_update_) if group["compiled"] else tiger_update_
            (beta,) = group["betas"]
            for kind, (params_k, grads_k, momenta_k) in self._by_kind(group, params, grads, momenta):
                weight_decay = group["weight_decay"]
                if group["parameter_scaling"] and kind in ("bias", "norm"):
                    weight_decay = 0.0
                scaled_kind = kind if group["parameter_scaling"] else None
                floors = [self._scale_floor(param) for param in params_k] if scaled_kind in ("matrix", "head") else None
                update(params_k, grads_k, momenta_k, scalar(group["lr"], momenta_k[0]), weight_decay,
                       keep=beta if micro_step % accumulation_steps == 0 else 1.0, weight=1 - beta,
                       apply=(micro_step + 1) % update_period == 0, kind=scaled_kind, floors=floors)
        return loss

    @staticmethod
    def _by_kind(group, params, grads, momenta):
        """[(kind, (params, grads, momenta))]: the whole group when it names its kind, else split by
        the kind inferred from each tensor's shape."""
        if group["kind"] is not None:
            return [(group["kind"], (params, grads, momenta))]
        split: dict[str, tuple[list, list, list]] = {}
        for param, grad, momentum in zip(params, grads, momenta):
            lists = split.setdefault(inferred_kind(param), ([], [], []))
            for target, value in zip(lists, (param, grad, momentum)):
                target.append(value)
        return list(split.items())

    def _scale_floor(self, param: torch.Tensor) -> float:
        """sqrt(1/fan_in), the scale used while this matrix's RMS is 0; warns if it is 0 when first seen.
        Kept outside the optimizer state, so that state stays one momentum tensor per parameter."""
        if param not in self._scale_floors:
            self._scale_floors[param] = math.sqrt(1 / param[0].numel())
            if not param.any():
                warnings.warn(f"Tiger: a {tuple(param.shape)} matrix has RMS 0 and would never move; its scale "
                              f"is floored at sqrt(1/fan_in) = {self._scale_floors[param]:.3g}", stacklevel=4)
        return self._scale_floors[param]

    def _shrink_non_finite(self, group, params, grads, momenta):
        """Apply the guard; return the (params, grads, momenta) that take a normal step."""
        finite = torch.isfinite(torch.stack(torch._foreach_norm(grads))).tolist()
        if all(finite):
            return params, grads, momenta
        ratio = group["shrink_ratio"]
        for param, ok in zip(params, finite):
            if not ok:
                centre = 1.0 if (group["kind"] or inferred_kind(param)) == "norm" else 0.0
                param.sub_(centre).mul_(ratio).add_(centre)
        keep = [i for i, ok in enumerate(finite) if ok]
        return [params[i] for i in keep], [grads[i] for i in keep], [momenta[i] for i in keep]
