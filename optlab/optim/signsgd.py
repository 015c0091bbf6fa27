"""SignSGD and Signum: Bernstein et al. 2018, "signSGD: Compressed Optimisation for Non-Convex
Problems" (arXiv 1802.04434); docs/science/optimizers.md §3.

    SignSGD:  θ ← θ·(1 − ηλ) − η·sign(g)                       (no state)
    Signum:   m ← β·m + (1 − β)·g;   θ ← θ·(1 − ηλ) − η·sign(m)

Identities: Signum ≡ basic Tiger ≡ Lion(β1 = β2 = β); SignSGD ≡ Lion(β1 = 0).
"""

from __future__ import annotations

import torch

from optlab.optim._common import closure_loss, gradients_with_state


class Signum(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-3, beta: float = 0.9, weight_decay: float = 0.0):
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if not 0 <= beta < 1:
            raise ValueError(f"beta must lie in [0, 1), got {beta}")
        super().__init__(params, dict(lr=lr, beta=beta, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            lr, beta, weight_decay = group["lr"], group["beta"], group["weight_decay"]
            if beta == 0:  # SignSGD: the sign of the gradient itself, no state
                params = [p for p in group["params"] if p.grad is not None]
                directions = [p.grad for p in params]
            else:
                params, grads, directions = gradients_with_state(self, group, "momentum")
                torch._foreach_mul_(directions, beta)
                torch._foreach_add_(directions, grads, alpha=1 - beta)
            if not params:
                continue
            if weight_decay:
                torch._foreach_mul_(params, 1 - lr * weight_decay)
            torch._foreach_add_(params, torch._foreach_sign(directions), alpha=-lr)
        return loss


class SignSGD(Signum):
    """Signum with β = 0: θ ← θ·(1 − ηλ) − η·sign(g)."""

    def __init__(self, params, lr: float = 1e-3, weight_decay: float = 0.0):
        super().__init__(params, lr=lr, beta=0.0, weight_decay=weight_decay)
