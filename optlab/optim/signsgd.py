"""SignSGD and Signum: Bernstein et al. 2018, "signSGD: Compressed Optimisation for Non-Convex
Problems" (arXiv 1802.04434); docs/science/optimizers.md §3.

    SignSGD:  θ ← θ·(1 − ηλ) − η·sign(g)                       (no state)
    Signum:   m ← β·m + (1 − β)·g;   θ ← θ·(1 − ηλ) − η·sign(m)

Identities: Signum ≡ basic Tiger ≡ Lion(β1 = β2 = β); SignSGD ≡ Lion(β1 = 0).
"""

from __future__ import annotations

import torch

from optlab.optim._common import (ScratchBuffers, check_beta, check_non_negative, check_positive,
                                  check_real_parameters, closure_loss, dense_gradient, gradients_with_state)


def sign_step_(params, directions, signs, lr: float, weight_decay: float):
    """θ ← θ·(1 − ηλ) − η·sign(d), in place on lists of tensors (`signs` holds sign(d))."""
    if weight_decay:
        torch._foreach_mul_(params, 1 - lr * weight_decay)
    torch._foreach_copy_(signs, directions)
    torch._foreach_sign_(signs)
    torch._foreach_add_(params, signs, alpha=-lr)


class Signum(torch.optim.Optimizer):
    """Signum: m ← β·m + (1 − β)·g;  θ ← θ·(1 − ηλ) − η·sign(m). lr η > 0, beta in [0, 1) (β = 0 is
    SignSGD, with no state), weight_decay λ ≥ 0. β is kept in each param group as `betas = (β,)`, Adam's β1
    slot, so the schedulers that cycle momentum (OneCycleLR, CyclicLR) can drive it."""

    def __init__(self, params, lr: float = 1e-3, beta: float = 0.9, weight_decay: float = 0.0):
        check_positive("lr", lr)
        check_beta("beta", beta)
        check_non_negative("weight_decay", weight_decay)
        super().__init__(params, dict(lr=lr, betas=(beta,), weight_decay=weight_decay))
        check_real_parameters(self)
        self._scratch = ScratchBuffers()

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            (beta,) = group["betas"]
            if beta == 0:  # SignSGD: the sign of the gradient itself, no state
                params = [p for p in group["params"] if p.grad is not None]
                directions = [dense_gradient(self, p) for p in params]
            else:
                params, grads, directions = gradients_with_state(self, group, "momentum")
            if not params:  # no gradient in this group this step (a frozen or unused part of a model)
                continue
            if beta != 0:
                torch._foreach_lerp_(directions, grads, 1 - beta)  # m ← β·m + (1 − β)·g
            sign_step_(params, directions, self._scratch.like(params, directions), group["lr"], group["weight_decay"])
        return loss


class SignSGD(torch.optim.Optimizer):
    """SignSGD (arXiv 1802.04434): θ ← θ·(1 − ηλ) − η·sign(g). No state and no momentum (so a scheduler
    that cycles momentum refuses it, as for any optimizer without one). lr η > 0, weight_decay λ ≥ 0."""

    def __init__(self, params, lr: float = 1e-3, weight_decay: float = 0.0):
        check_positive("lr", lr)
        check_non_negative("weight_decay", weight_decay)
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay))
        check_real_parameters(self)
        self._scratch = ScratchBuffers()

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                grads = [dense_gradient(self, p) for p in params]
                sign_step_(params, grads, self._scratch.like(params, grads), group["lr"], group["weight_decay"])
        return loss
