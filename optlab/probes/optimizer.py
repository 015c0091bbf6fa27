"""What the optimizers hold and apply, any optimizer:

    lr_x_weight_decay.<kind>          effective per-step decay η_t·λ of the param groups of each kind
    optimizer_state_bytes_per_param   bytes of optimizer state tensors ÷ number of parameters
    and whatever an optimizer reports about itself through the optional protocol member `metrics()`
    (Amos: its implied schedule, `amos.d` and `amos.decay_per_step`).
"""

from __future__ import annotations

import torch

from optlab.probes.probe import Probe, ProbeContext


def optimizer_metrics(optimizers: list[torch.optim.Optimizer], parameter_count: int) -> dict[str, float]:
    metrics: dict[str, float] = {}
    state_bytes = 0
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            metrics.setdefault(f"lr_x_weight_decay.{group.get('kind') or 'all'}", group["lr"] * group.get("weight_decay", 0.0))
        for state in optimizer.state.values():
            state_bytes += sum(v.numel() * v.element_size() for v in state.values() if torch.is_tensor(v) and v.ndim > 0)
        own_metrics = getattr(optimizer, "metrics", None)  # the optional protocol member
        if own_metrics is not None:
            metrics.update(own_metrics())
    metrics["optimizer_state_bytes_per_param"] = state_bytes / parameter_count
    return metrics


class OptimizerProbe(Probe):
    name = "optimizer"

    def __init__(self, context: ProbeContext):
        self.context = context

    def measure(self, step: int, row: dict) -> dict:
        return optimizer_metrics(self.context.optimizers, self.context.parameter_count)
