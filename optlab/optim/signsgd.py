"""SignSGD and Signum: Bernstein et al. 2018, "signSGD: Compressed Optimisation for Non-Convex
Problems" (arXiv 1802.04434); docs/science/optimizers.md §3.

    SignSGD:  θ ← θ·(1 − ηλ) − η·sign(g)                       (no state)
    Signum:   m ← β·m + (1 − β)·g;   θ ← θ·(1 − ηλ) − η·sign(m)

Identities: Signum ≡ basic Tiger ≡ Lion(β1 = β2 = β); SignSGD ≡ Lion(β1 = 0).
"""

from __future__ import annotations

import torch

from optlab.optim._common import (check_beta, check_non_negative, check_positive, check_real_parameters, closure_loss,
                                  dense_gradient, gradients_with_state)


class Signum(torch.optim.Optimizer):
    """Signum: m ← β·m + (1 − β)·g;  θ ← θ·(1 − ηλ) − η·sign(m). lr η > 0, beta in [0, 1) (β = 0 is
    SignSGD, with no state), weight_decay λ ≥ 0."""

    def __init__(self, params, lr: float = 1e-3, beta: float = 0.9, weight_decay: float = 0.0):
        check_positive("lr", lr)
        check_beta("beta", beta)
        check_non_negative("weight_decay", weight_decay)
        super().__init__(params, dict(lr=lr, beta=beta, weight_decay=weight_decay))
        check_real_parameters(self)

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            lr, beta, weight_decay = group["lr"], group["beta"], group["weight_decay"]
            if beta == 0:  # SignSGD: the sign of the gradient itself, no state
                params = [p for p in group["params"] if p.grad is not None]
                directions = [dense_gradient(self, p) for p in params]
            else:
                params, grads, directions = gradients_with_state(self, group, "momentum")
            if not params:  # no gradient in this group this step (a frozen or unused part of a model)
                continue
            if beta != 0:
                torch._foreach_mul_(directions, beta)
                torch._foreach_add_(directions, grads, alpha=1 - beta)
            if weight_decay:
                torch._foreach_mul_(params, 1 - lr * weight_decay)
            torch._foreach_add_(params, torch._foreach_sign(directions), alpha=-lr)
        return loss


class SignSGD(Signum):
    """SignSGD (arXiv 1802.04434), Signum with β = 0: θ ← θ·(1 − ηλ) − η·sign(g). No state."""

    def __init__(self, params, lr: float = 1e-3, weight_decay: float = 0.0):
        super().__init__(params, lr=lr, beta=0.0, weight_decay=weight_decay)
