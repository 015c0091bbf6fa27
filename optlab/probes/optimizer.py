"""What the optimizers hold and apply, any optimizer:

    lr_x_weight_decay.<kind>          effective per-step decay η_t·λ of the param groups of each kind
    optimizer_state_bytes_per_param   bytes of optimizer state tensors ÷ number of parameters
    amos.d, amos.decay_per_step       Amos's implied lr factor d_t and decay ½·d_t·γ_t (when Amos is used)
"""

from __future__ import annotations

import torch


def optimizer_metrics(optimizers: list[torch.optim.Optimizer], parameter_count: int) -> dict[str, float]:
    metrics: dict[str, float] = {}
    state_bytes = 0
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            metrics.setdefault(f"lr_x_weight_decay.{group.get('kind', 'all')}", group["lr"] * group.get("weight_decay", 0.0))
        for state in optimizer.state.values():
            state_bytes += sum(v.numel() * v.element_size() for v in state.values() if torch.is_tensor(v) and v.ndim > 0)
        if hasattr(optimizer, "implied_schedule"):
            metrics.update(optimizer.implied_schedule())
    metrics["optimizer_state_bytes_per_param"] = state_bytes / parameter_count
    return metrics
