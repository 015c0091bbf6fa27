"""First-order view of one optimizer step (other-effects.md §1, Su kexue.fm/archives/10657).

For a step θ → θ + Δθ taken with the batch-mean gradient g (before clipping) of batch b:
    loss_change            = L_b(θ + Δθ) − L_b(θ)   measured on the same batch, after the step
    loss_change_predicted  = g·Δθ                    the first-order prediction (−η‖g‖² for SGD,
                                                     −η‖g‖₁ for SignSGD, −η·u·g in general)
    grad_l1                = ‖g‖₁
    grad_sign_cosine       = cos(sign(g), g) = ‖g‖₁/(√N‖g‖₂)   (1 for a flat |g|, small for a peaked one)
"""

from __future__ import annotations

import math

import torch


def first_order_metrics(raw_grads: list[torch.Tensor], before: list[torch.Tensor], after: list[torch.Tensor],
                        loss_before: float, loss_after: float) -> dict[str, float]:
    deltas = torch._foreach_sub(after, before)
    predicted = sum((g.double() * d.double()).sum() for g, d in zip(raw_grads, deltas)).item()
    l1 = sum(g.double().abs().sum() for g in raw_grads).item()
    l2 = math.sqrt(sum(g.double().pow(2).sum() for g in raw_grads).item())
    count = sum(g.numel() for g in raw_grads)
    return {"loss_change": loss_after - loss_before, "loss_change_predicted": predicted, "grad_l1": l1,
            "grad_sign_cosine": l1 / (math.sqrt(count) * l2) if l2 else math.nan}
