"""Lion: Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms" (arXiv 2302.06675).

Step t, in the order of the official reference (docs/science/optimizers.md §1):
    θ ← θ·(1 − ηλ)                         decoupled, lr-coupled decay (uses θ_{t−1})
    c = β1·m + (1 − β1)·g                  interpolation used only for the update
    θ ← θ − η·sign(c)
    m ← β2·m + (1 − β2)·g                  momentum updated after the step

`compiled=True` runs the same update through torch.compile, fusing it into one pass over memory.
"""

from __future__ import annotations

import torch

from optlab.optim._common import (ScratchBuffers, check_beta, check_non_negative, check_positive,
                                  check_real_parameters, closure_loss, compiled, gradients_with_state, scalar)


def lion_update_(params, grads, momenta, scratch, lr, weight_decay, beta1, beta2):
    """The Lion step on lists of tensors (in place). `scratch` holds the interpolation (None in the compiled
    update, where torch.compile fuses the temporaries away). `lr` is a 0-dim tensor, so a changing lr does
    not recompile the compiled update."""
    if weight_decay:
        torch._foreach_mul_(params, 1 - lr * weight_decay)
    if scratch is None:
        interpolation = torch._foreach_lerp(grads, momenta, beta1)  # β1·m + (1 − β1)·g
    else:
        interpolation = scratch
        torch._foreach_copy_(interpolation, grads)
        torch._foreach_lerp_(interpolation, momenta, beta1)
    torch._foreach_sign_(interpolation)
    torch._foreach_addcmul_(params, interpolation, [lr] * len(params), value=-1)  # θ ← θ − η·sign(c)
    torch._foreach_lerp_(momenta, grads, 1 - beta2)  # β2·m + (1 − β2)·g


class Lion(torch.optim.Optimizer):
    """Lion (arXiv 2302.06675). Per step, with momentum m (zeros at the start):

        θ ← θ·(1 − ηλ);   θ ← θ − η·sign(β1·m + (1 − β1)·g);   m ← β2·m + (1 − β2)·g

    lr η > 0, betas (β1, β2) in [0, 1), weight_decay λ ≥ 0 (decoupled, lr-coupled). `compiled` fuses the
    update with torch.compile."""

    def __init__(self, params, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99), weight_decay: float = 0.0,
                 compiled: bool = False):
        check_positive("lr", lr)
        check_beta("betas[0]", betas[0])
        check_beta("betas[1]", betas[1])
        check_non_negative("weight_decay", weight_decay)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay, compiled=compiled))
        check_real_parameters(self)
        self._scratch = ScratchBuffers()

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            params, grads, momenta = gradients_with_state(self, group, "momentum")
            if not params:
                continue
            fused = compiled(lion_update_) if group["compiled"] else None
            beta1, beta2 = group["betas"]
            scratch = None if fused else self._scratch.like(params, momenta)
            (fused or lion_update_)(params, grads, momenta, scratch, scalar(group["lr"], momenta[0]),
                                    group["weight_decay"], beta1, beta2)
        return loss
