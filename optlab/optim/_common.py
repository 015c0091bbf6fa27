"""Helpers shared by optlab's own optimizers."""

from __future__ import annotations

import warnings

import torch


def state_dtype(param: torch.Tensor) -> torch.dtype:
    """Optimizer state is kept in at least float32 (float64 parameters keep float64 state).

    Denormals: optlab leaves the process's denormal mode alone. With gradual underflow (the default on
    CPU and CUDA) a momentum that only decays, m <- fl(β·m), never reaches 0 in float32, so sign(m) stays
    ±1 forever (docs/science/embedding-drift.md §4); `torch.set_flush_denormal(True)` flushes it to 0 instead.
    """
    return torch.float64 if param.dtype == torch.float64 else torch.float32


def check(name: str, value, valid: bool, requirement: str) -> None:
    """Raise ValueError naming the hyper-parameter unless `valid` (torch.optim validates in __init__)."""
    if not valid:
        raise ValueError(f"{name} must be {requirement}, got {value!r}")


def check_positive(name: str, value: float) -> None:
    check(name, value, value > 0, "positive")


def check_non_negative(name: str, value: float) -> None:
    check(name, value, value >= 0, "≥ 0")


def check_beta(name: str, value: float) -> None:
    check(name, value, 0 <= value < 1, "in [0, 1)")


def check_choice(name: str, value, choices: tuple) -> None:
    check(name, value, value in choices, f"one of {', '.join(map(str, choices))}")


def check_real_parameters(optimizer: torch.optim.Optimizer) -> None:
    """optlab's optimizers keep real state and take signs or real powers of the gradient: a complex
    parameter would silently lose its imaginary part, so it is refused."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            if param.is_complex():
                raise ValueError(f"{type(optimizer).__name__} does not support complex parameters (got {param.dtype}); "
                                 "optimize torch.view_as_real(param) instead")


def dense_gradient(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> torch.Tensor:
    """param.grad, refusing sparse gradients with a clear error (as torch's Adam does)."""
    if param.grad.is_sparse:
        raise RuntimeError(f"{type(optimizer).__name__} does not support sparse gradients; use a dense embedding "
                           "(nn.Embedding(sparse=False))")
    return param.grad


def closure_loss(closure):
    """The loss of `closure` evaluated with gradients enabled (torch.optim's step(closure) protocol)."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def state_buffer(optimizer: torch.optim.Optimizer, param: torch.Tensor, state_key: str) -> torch.Tensor:
    """The `state_key` buffer of `param`, created as zeros (in the state dtype) on first use."""
    state = optimizer.state[param]
    if state_key not in state:
        state[state_key] = torch.zeros_like(param, dtype=state_dtype(param), memory_format=torch.preserve_format)
    return state[state_key]


def gradients_with_state(optimizer: torch.optim.Optimizer, group: dict, state_key: str):
    """The parameters of `group` that have a gradient, their gradients (in the state dtype) and their
    `state_key` buffers (created as zeros on first use). Parameters whose grad is None are skipped."""
    params, grads, buffers = [], [], []
    for param in group["params"]:
        if param.grad is None:
            continue
        grad = dense_gradient(optimizer, param)
        buffer = state_buffer(optimizer, param, state_key)
        params.append(param)
        grads.append(grad if grad.dtype == buffer.dtype else grad.to(buffer.dtype))
        buffers.append(buffer)
    return params, grads, buffers


class ScratchBuffers:
    """One reusable full-size temporary per parameter (e.g. for sign(m) before it is applied).

    On CPU a fresh full-size tensor at every step costs more than the arithmetic done in it: the allocator
    hands back new pages, which the kernel faults in and zeroes (scripts/bench_optim.py: an out-of-place
    foreach op on the GPT-like set takes 2.5× its in-place twin). Keeping the buffer costs its memory
    between steps; it is not optimizer state (not saved, rebuilt on demand). The buffers of a list of
    parameters are found by the parameters' ids (kept alive with them, so an id cannot be reused while
    cached): one dictionary lookup per step instead of one per tensor; a parameter moved or cast in place
    (`model.to(...)`) gets new buffers."""

    def __init__(self):
        self._buffers: dict[tuple, tuple[list, list[torch.Tensor]]] = {}

    def like(self, params, tensors) -> list[torch.Tensor]:
        """A buffer shaped and typed like each of `tensors`, kept for the matching parameter."""
        key = tuple(map(id, params))
        entry = self._buffers.get(key)
        if entry is None or not all(buffer.shape == tensor.shape and buffer.dtype == tensor.dtype
                                    and buffer.device == tensor.device for buffer, tensor in zip(entry[1], tensors)):
            if len(self._buffers) >= 16:  # param groups come and go (add_param_group, a rebuilt model)
                self._buffers.clear()
            buffers = [torch.empty_like(tensor, memory_format=torch.contiguous_format) for tensor in tensors]
            entry = self._buffers[key] = (list(params), buffers)
        return entry[1]


def scalar(value: float, like: torch.Tensor) -> torch.Tensor:
    """A 0-dim tensor (in the state dtype of `like`, float32 for bf16/fp16) for a hyper-parameter that changes
    between steps (the lr under a schedule), so a compiled update does not recompile when its value changes."""
    return torch.tensor(value, dtype=state_dtype(like))


_compiled: dict = {}


def compiled(function):
    """`function` compiled once per process with torch.compile (fused kernels for the foreach update), or
    None once compiling it has failed (no C++ compiler for inductor's CPU kernels, an unsupported platform:
    one warning), so that the caller takes its eager path from then on.

    Shapes are static (dynamic=False): a model's shapes do not change during a run, and after a second
    model's shapes dynamo would otherwise compile a shape-generic graph, whose kernels and guards made a
    tiny model's compiled Tiger step 1.5× slower (measured: one more optimizer in the process, 200 → 300 µs)."""
    if function not in _compiled:
        # One graph per set of tensor shapes: a sweep worker or a benchmark that builds many models in one
        # process needs more than dynamo's default of 8 per function (fullgraph=True makes the 9th an error).
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 256)
        # size_asserts off: dynamo's guards already check every input's sizes and strides before the compiled
        # code runs, and the asserts cost ~0.5 µs per tensor per step (a fifth of a tiny compiled Tiger step).
        fused = torch.compile(function, fullgraph=True, dynamic=False, options={"size_asserts": False})
        _compiled[function] = _CompiledOrEager(function, fused)
    return _compiled[function] if _compiled[function].fused is not None else None


class _CompiledOrEager:
    """Calls the compiled function; where its compile fails, warns once and runs the eager one instead."""

    def __init__(self, eager, fused):
        self.eager, self.fused = eager, fused

    def __call__(self, *args, **kwargs):
        if self.fused is not None:
            try:
                return self.fused(*args, **kwargs)
            except torch._dynamo.exc.BackendCompilerFailed as error:
                cause = getattr(error, "inner_exception", error)
                warnings.warn(f"torch.compile of {self.eager.__name__} failed ({type(cause).__name__}: "
                              f"{str(cause).splitlines()[0][:200] if str(cause) else ''}); using the eager update",
                              stacklevel=3)
                self.fused = None
        return self.eager(*args, **kwargs)
