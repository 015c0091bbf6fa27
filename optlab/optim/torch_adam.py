"""torch.optim.Adam and AdamW as optlab builds them: fused by default.

torch's own default on CPU is the for-loop implementation (fused=None and foreach=None pick it for CPU
tensors), 2–3× slower per step than its single-kernel `fused=True` on the models optlab trains
(scripts/bench_optim.py). `fused=None` here means: fused wherever torch has that kernel for every
parameter (floating point on CPU or CUDA), torch's default otherwise (complex parameters, other devices).
The update rule is torch's in every case (docs/science/optimizers.md §4); `fused: false` in a config
keeps the unfused path.
"""

from __future__ import annotations

import inspect

import torch

FUSED_DEVICES = ("cpu", "cuda")


def has_fused_kernel(params: list) -> bool:
    """Whether torch's fused Adam(W) kernel takes every tensor of `params` (tensors or param-group dicts)."""
    tensors = [tensor for entry in params for tensor in (entry["params"] if isinstance(entry, dict) else [entry])]
    return bool(tensors) and all(torch.is_floating_point(t) and t.device.type in FUSED_DEVICES for t in tensors)


def adamw(params, fused: bool | None = None, **hyper_parameters) -> torch.optim.AdamW:
    """torch.optim.AdamW, fused where the kernel applies unless `fused` says otherwise."""
    params = list(params)
    return torch.optim.AdamW(params, fused=has_fused_kernel(params) if fused is None else fused, **hyper_parameters)


def adam(params, fused: bool | None = None, **hyper_parameters) -> torch.optim.Adam:
    """torch.optim.Adam, fused where the kernel applies unless `fused` says otherwise."""
    params = list(params)
    return torch.optim.Adam(params, fused=has_fused_kernel(params) if fused is None else fused, **hyper_parameters)


# the keywords are torch's own (fused=None included): tools that read a factory's signature see them all
adamw.__signature__ = inspect.signature(torch.optim.AdamW)
adam.__signature__ = inspect.signature(torch.optim.Adam)
