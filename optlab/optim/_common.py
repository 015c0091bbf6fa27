"""Helpers shared by optlab's own optimizers."""

from __future__ import annotations

import torch


def state_dtype(param: torch.Tensor) -> torch.dtype:
    """Optimizer state is kept in at least float32 (float64 parameters keep float64 state).

    Denormals: optlab leaves the process's denormal mode alone. With gradual underflow (the default on
    CPU and CUDA) a momentum that only decays, m <- fl(β·m), never reaches 0 in float32, so sign(m) stays
    ±1 forever (docs/science/embedding-drift.md §4); `torch.set_flush_denormal(True)` flushes it to 0 instead.
    """
    return torch.float64 if param.dtype == torch.float64 else torch.float32


def closure_loss(closure):
    """The loss of `closure` evaluated with gradients enabled (torch.optim's step(closure) protocol)."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def gradients_with_state(optimizer: torch.optim.Optimizer, group: dict, state_key: str):
    """The parameters of `group` that have a gradient, their gradients (in the state dtype) and their
    `state_key` buffers (created as zeros on first use). Parameters whose grad is None are skipped."""
    params, grads, buffers = [], [], []
    for param in group["params"]:
        if param.grad is None:
            continue
        state = optimizer.state[param]
        if state_key not in state:
            state[state_key] = torch.zeros_like(param, dtype=state_dtype(param), memory_format=torch.preserve_format)
        params.append(param)
        grads.append(param.grad.to(state[state_key].dtype))
        buffers.append(state[state_key])
    return params, grads, buffers


def scalar(value: float, like: torch.Tensor) -> torch.Tensor:
    """A 0-dim tensor for a hyper-parameter that changes between steps (the lr under a schedule), so a
    compiled update does not recompile when its value changes."""
    return torch.tensor(value, dtype=like.dtype)


_compiled: dict = {}


def compiled(function):
    """`function` compiled once per process with torch.compile (fused kernels for the foreach update);
    the eager function is the reference and stays the default."""
    if function not in _compiled:
        _compiled[function] = torch.compile(function, fullgraph=True)
    return _compiled[function]
