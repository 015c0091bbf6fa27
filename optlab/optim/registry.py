"""Optimizer names -> classes. Every spec in config.py maps its fields one-to-one onto the constructor."""

from __future__ import annotations

import torch

from optlab.config import OptimizerSpec
from optlab.optim.amos import Amos
from optlab.optim.lion import Lion
from optlab.optim.muon import Muon
from optlab.optim.signsgd import SignSGD, Signum
from optlab.optim.tiger import Tiger

OPTIMIZER_CLASSES: dict[str, type[torch.optim.Optimizer]] = {
    "adamw": torch.optim.AdamW,
    "adam": torch.optim.Adam,
    "sgd": torch.optim.SGD,
    "signsgd": SignSGD,
    "signum": Signum,
    "lion": Lion,
    "tiger": Tiger,
    "amos": Amos,
    "muon": Muon,
}


def build_optimizer(spec: OptimizerSpec, param_groups: list[dict], accumulation_steps: int = 1) -> torch.optim.Optimizer:
    """Construct the optimizer named by `spec`; the groups may carry their own lr / weight_decay.

    `accumulation_steps` reaches Tiger when its spec absorbs accumulation into the momentum.
    """
    kwargs = spec.model_dump(exclude={"name", "absorb_accumulation", "aux_adamw"})
    if getattr(spec, "absorb_accumulation", False):
        kwargs["accumulation_steps"] = accumulation_steps
    return OPTIMIZER_CLASSES[spec.name](param_groups, **kwargs)
