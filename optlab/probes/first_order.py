"""First-order view of one optimizer step (docs/science/other-effects.md §1, Su kexue.fm/archives/10657).

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

from optlab.errors import OptlabError
from optlab.probes.probe import Probe, ProbeContext
from optlab.probes.updates import snapshot


def first_order_metrics(raw_grads: list[torch.Tensor], before: list[torch.Tensor], after: list[torch.Tensor],
                        loss_before: float, loss_after: float) -> dict[str, float]:
    deltas = torch._foreach_sub(after, before)
    predicted = sum((g.double() * d.double()).sum() for g, d in zip(raw_grads, deltas)).item()
    l1 = sum(g.double().abs().sum() for g in raw_grads).item()
    l2 = math.sqrt(sum(g.double().pow(2).sum() for g in raw_grads).item())
    count = sum(g.numel() for g in raw_grads)
    return {"loss_change": loss_after - loss_before, "loss_change_predicted": predicted, "grad_l1": l1,
            "grad_sign_cosine": l1 / (math.sqrt(count) * l2) if l2 else math.nan}


class LossChangeProbe(Probe):
    """`probes.loss_change`: the step's loss change on its own batch against g·Δθ (one micro-batch per step)."""

    name = "loss_change"

    def __init__(self, context: ProbeContext):
        if context.micro_batches > 1:
            raise OptlabError("probes.loss_change compares losses on the step's batch; it needs one micro-batch per "
                              "step (drop grad_accum_steps / max_micro_batch)")
        self.context = context
        self.before: dict[str, torch.Tensor] = {}

    def before_step(self, step: int) -> None:
        self.before = snapshot(self.context.parameters)

    def after_backward(self, batch) -> None:
        self.batch = batch
        self.raw_grads = [p.grad.clone() for p in self.context.parameters.values() if p.grad is not None]

    def measure(self, step: int, row: dict) -> dict:
        stepped = {name: p for name, p in self.context.parameters.items() if p.grad is not None}
        return first_order_metrics(self.raw_grads, [self.before[name] for name in stepped],
                                   [p.detach() for p in stepped.values()], row["loss"], self.context.evaluate(self.batch))
