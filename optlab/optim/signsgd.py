"""SignSGD and Signum: Bernstein et al. 2018, "signSGD: Compressed Optimisation for Non-Convex
Problems" (arXiv 1802.04434); docs/science/optimizers.md §3.

    SignSGD:  θ ← θ·(1 − ηλ) − η·sign(g)                       (no state)
    Signum:   m ← β·m + (1 − β)·g;   θ ← θ·(1 − ηλ) − η·sign(m)

Identities: Signum ≡ basic Tiger ≡ Lion(β1 = β2 = β); SignSGD ≡ Lion(β1 = 0).
"""

from __future__ import annotations

import torch

from optlab.optim._common import (ScratchBuffers, check_beta, check_non_negative, check_positive,
                                  check_real_parameters, closure_loss, compiled, dense_gradient, gradients_with_state,
                                  scalar)


def sign_update_(params, grads, momenta, signs, lr, weight_decay: float, beta: float):
    """Signum's step on lists of tensors (in place); SignSGD's where `momenta` is None (the sign of g itself):

        m ← β·m + (1 − β)·g;   θ ← θ·(1 − ηλ) − η·sign(m)

    `signs` is scratch space for the signs (None in the compiled update, where torch.compile fuses the
    temporaries away). `lr` is a 0-dim tensor, so a changing lr does not recompile the compiled update."""
    directions = grads
    if momenta is not None:
        torch._foreach_lerp_(momenta, grads, 1 - beta)
        directions = momenta
    if weight_decay:
        torch._foreach_mul_(params, 1 - lr * weight_decay)
    if signs is None:
        signs = torch._foreach_sign(directions)
    else:
        torch._foreach_copy_(signs, directions)
        torch._foreach_sign_(signs)
    torch._foreach_addcmul_(params, signs, [lr] * len(params), value=-1)  # θ ← θ − η·sign(m)


def sign_step(optimizer, params, grads, momenta, group, beta: float) -> None:
    """One group's step through `sign_update_`, compiled where the group asks for it."""
    fused = compiled(sign_update_) if group["compiled"] else None
    signs = None if fused else optimizer._scratch.like(params, grads)
    (fused or sign_update_)(params, grads, momenta, signs, scalar(group["lr"], grads[0]), group["weight_decay"], beta)


class Signum(torch.optim.Optimizer):
    """Signum: m ← β·m + (1 − β)·g;  θ ← θ·(1 − ηλ) − η·sign(m). lr η > 0, beta in [0, 1) (β = 0 is
    SignSGD, with no state), weight_decay λ ≥ 0. β is kept in each param group as `betas = (β,)`, Adam's β1
    slot, so the schedulers that cycle momentum (OneCycleLR, CyclicLR) can drive it. `compiled` fuses the
    update with torch.compile."""

    def __init__(self, params, lr: float = 1e-3, beta: float = 0.9, weight_decay: float = 0.0, compiled: bool = False):
        check_positive("lr", lr)
        check_beta("beta", beta)
        check_non_negative("weight_decay", weight_decay)
        super().__init__(params, dict(lr=lr, betas=(beta,), weight_decay=weight_decay, compiled=compiled))
        check_real_parameters(self)
        self._scratch = ScratchBuffers()

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            (beta,) = group["betas"]
            if beta == 0:  # SignSGD: the sign of the gradient itself, no state
                params = [p for p in group["params"] if p.grad is not None]
                grads, momenta = [dense_gradient(self, p) for p in params], None
            else:
                params, grads, momenta = gradients_with_state(self, group, "momentum")
            if params:  # else no gradient in this group this step (a frozen or unused part of a model)
                sign_step(self, params, grads, momenta, group, beta)
        return loss


class SignSGD(torch.optim.Optimizer):
    """SignSGD (arXiv 1802.04434): θ ← θ·(1 − ηλ) − η·sign(g). No state and no momentum (so a scheduler
    that cycles momentum refuses it, as for any optimizer without one). lr η > 0, weight_decay λ ≥ 0.
    `compiled` fuses the update with torch.compile."""

    def __init__(self, params, lr: float = 1e-3, weight_decay: float = 0.0, compiled: bool = False):
        check_positive("lr", lr)
        check_non_negative("weight_decay", weight_decay)
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, compiled=compiled))
        check_real_parameters(self)
        self._scratch = ScratchBuffers()

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                sign_step(self, params, [dense_gradient(self, p) for p in params], None, group, 0.0)
        return loss
