"""Optimizer names -> classes. Every spec in config.py maps its fields one-to-one onto the constructor."""

from __future__ import annotations

import torch

from optlab.config import OptimizerSpec
from optlab.optim.lion import Lion
from optlab.optim.tiger import Tiger

OPTIMIZER_CLASSES: dict[str, type[torch.optim.Optimizer]] = {
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "lion": Lion,
    "tiger": Tiger,
}


def build_optimizer(spec: OptimizerSpec, param_groups: list[dict]) -> torch.optim.Optimizer:
    """Construct the optimizer named by `spec`; the groups may carry their own lr / weight_decay."""
    return OPTIMIZER_CLASSES[spec.name](param_groups, **spec.model_dump(exclude={"name"}))
