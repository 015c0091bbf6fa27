"""Lion: Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms" (arXiv 2302.06675).

Step t, in the order of the official reference (optimizers.md §1):
    θ ← θ·(1 − ηλ)                         decoupled, lr-coupled decay (uses θ_{t−1})
    c = β1·m + (1 − β1)·g                  interpolation used only for the update
    θ ← θ − η·sign(c)
    m ← β2·m + (1 − β2)·g                  momentum updated after the step
"""

from __future__ import annotations

import torch

from optlab.optim._common import gradients_with_state


class Lion(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99), weight_decay: float = 0.0):
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if not all(0 <= beta < 1 for beta in betas):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay))

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
            lr, weight_decay, (beta1, beta2) = group["lr"], group["weight_decay"], group["betas"]
            if weight_decay:
                torch._foreach_mul_(params, 1 - lr * weight_decay)
            interpolation = torch._foreach_mul(momenta, beta1)
            torch._foreach_add_(interpolation, grads, alpha=1 - beta1)
            torch._foreach_sign_(interpolation)
            torch._foreach_add_(params, interpolation, alpha=-lr)
            torch._foreach_mul_(momenta, beta2)
            torch._foreach_add_(momenta, grads, alpha=1 - beta2)
        return loss
