"""Optimizers, one module each, usable on their own in any PyTorch loop:

    from optlab.optim import Tiger, parameter_groups
    optimizer = Tiger(parameter_groups(model, weight_decay=0.01), lr=1e-3)

Lion, Tiger, Amos, Muon, SignSGD, Signum follow torch.optim.Optimizer (param groups, state_dict, lr
schedulers). `parameter_groups(model)` gives any nn.Module optlab's parameter kinds (embedding, head,
matrix, bias, norm), which Tiger's and Amos's per-kind rules read. groups.py holds the kinds, the
routing rules of a config and lazy rows; schema.py the YAML schema of each optimizer (torch-free).

Imports are lazy, so that reading the schema does not import torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Lion": "optlab.optim.lion", "Tiger": "optlab.optim.tiger", "Amos": "optlab.optim.amos",
    "Muon": "optlab.optim.muon", "SignSGD": "optlab.optim.signsgd", "Signum": "optlab.optim.signsgd",
    "parameter_groups": "optlab.optim.groups", "parameter_kinds": "optlab.optim.groups",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'optlab.optim' has no attribute {name!r}")
