"""Parameter kinds, routing rules, lazy embedding rows, and the optimizers of a config.

Kinds: `embedding` (nn.Embedding weights), `head` (the output projection), `bias` (any parameter named
*bias), `norm` (LayerNorm gains), `matrix` (every other tensor with ≥ 2 dimensions).

Routing (config `param_groups`): each parameter takes the first rule that matches its kind / name; the
rule may give it another optimizer, an lr multiplier and its own weight decay; kinds in `no_decay` get
none. A spec may hand some kinds to another (Muon sends all but matrices to its AdamW). Parameters sharing (optimizer, lr, decay, kind, laziness) form one param group, and each distinct
optimizer spec becomes one torch optimizer.

Lazy rows (fix (a), docs/science/embedding-drift.md §5): for groups with `lazy_rows`, a step pre-hook records the
rows whose gradient row is exactly zero (Σ_j |g_ij| = 0) and a post-hook puts those rows of the
parameter and of every same-shaped state tensor back as they were (zeros for state created this step):
such rows get no decay, no momentum change and no move, whatever the optimizer. Per-tensor counters
(AdamW's `step`) still advance.
"""

from __future__ import annotations

import torch
from torch import nn

from optlab.errors import ConfigError, OptlabError
from optlab.optim.schema import NO_DECAY_KINDS, Placement


def parameter_kinds(model: nn.Module) -> dict[str, str]:
    """Map each parameter name to its kind."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    norm_gains = {id(m.weight) for m in model.modules() if isinstance(m, nn.LayerNorm) and m.weight is not None}
    kinds = {}
    for name, param in model.named_parameters():
        if id(param) in embeddings:
            kinds[name] = "embedding"
        elif name.endswith("bias"):
            kinds[name] = "bias"
        elif id(param) in norm_gains:
            kinds[name] = "norm"
        elif name.startswith("head.") or ".head." in name:
            kinds[name] = "head"
        elif param.ndim >= 2:
            kinds[name] = "matrix"
        else:
            kinds[name] = "bias"
    return kinds


def parameter_groups(model: nn.Module, weight_decay: float | None = None,
                     no_decay: tuple[str, ...] = NO_DECAY_KINDS) -> list[dict]:
    """Param groups for any nn.Module, one per parameter kind, each carrying its `kind` and
    `param_names` (Tiger's and Amos's per-kind rules read `kind`); the kinds in `no_decay` get
    weight_decay 0, the others `weight_decay` (None: the optimizer's default).

        optimizer = Tiger(parameter_groups(model, weight_decay=0.01), lr=1e-3)
    """
    parameters = dict(model.named_parameters())
    groups: dict[str, dict] = {}
    for name, kind in parameter_kinds(model).items():
        group = groups.setdefault(kind, {"params": [], "param_names": [], "kind": kind})
        group["params"].append(parameters[name])
        group["param_names"].append(name)
    for kind, group in groups.items():
        if kind in no_decay:
            group["weight_decay"] = 0.0
        elif weight_decay is not None:
            group["weight_decay"] = weight_decay
    return list(groups.values())


def absorbs_accumulation(optimizer: torch.optim.Optimizer, micro_batches: int) -> bool:
    """The loop's one contract with optimizers beyond torch.optim's: an optimizer whose defaults hold
    `accumulation_steps` = k > 1 folds k micro-batch gradients into its own state (Tiger,
    docs/science/optimizers.md §2.4). The loop then calls its step() after every micro-batch, so the
    summed gradient never exists, and the run must use exactly k micro-batches."""
    steps = optimizer.defaults.get("accumulation_steps", 1)
    if steps > 1 and steps != micro_batches:
        raise OptlabError(f"optimizer.accumulation_steps is {steps} but the run uses {micro_batches} micro-batches "
                          f"per step; set training.grad_accum_steps: {steps}")
    return steps > 1


def place_parameters(model: nn.Module, config) -> dict[str, Placement]:
    """Each parameter's Placement under the config's param-group rules (optim/schema.py)."""
    return {name: config.param_groups.place(config.optimizer, name, kind) for name, kind in parameter_kinds(model).items()}


def build_optimizers(model: nn.Module, config) -> list[torch.optim.Optimizer]:
    """One torch optimizer per distinct optimizer spec of the ExperimentConfig `config`, with param
    groups per (lr, decay, kind, lazy)."""
    parameters = dict(model.named_parameters())
    by_spec: dict[str, tuple[object, dict]] = {}
    for name, placement in place_parameters(model, config).items():
        spec_key = placement.spec.model_dump_json()
        _, groups = by_spec.setdefault(spec_key, (placement.spec, {}))
        group_key = (placement.lr, placement.weight_decay, placement.kind, placement.lazy_rows)
        group = groups.setdefault(group_key, dict(
            params=[], param_names=[], lr=placement.lr, weight_decay=placement.weight_decay,
            kind=placement.kind, lazy_rows=placement.lazy_rows,
        ))
        group["params"].append(parameters[name])
        group["param_names"].append(name)
    optimizers = []
    device_type = next(iter(parameters.values())).device.type if parameters else "cpu"
    for spec, groups in by_spec.values():
        count = sum(param.numel() for group in groups.values() for param in group["params"])
        spec = spec.for_run(count, config.training.steps, device_type)
        optimizer = build_optimizer(spec, list(groups.values()))
        if any(group["lazy_rows"] for group in optimizer.param_groups):
            install_lazy_rows(optimizer)
        optimizers.append(optimizer)
    return optimizers


def build_optimizer(spec, param_groups: list[dict]) -> torch.optim.Optimizer:
    """The optimizer a spec names (built-in or by import path) over `param_groups`; the groups may carry
    their own lr / weight_decay."""
    try:
        optimizer = spec.factory()(param_groups, **spec.keywords())
    except (TypeError, ValueError) as error:
        raise ConfigError(f"optimizer: {spec.name} rejected its settings ({type(error).__name__}: {error})") from None
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigError(f"optimizer: {spec.name} returned a {type(optimizer).__name__}, not a torch.optim.Optimizer")
    return optimizer


def install_lazy_rows(optimizer: torch.optim.Optimizer) -> None:
    """Make rows with an all-zero gradient untouched by `optimizer.step()` in groups with `lazy_rows`."""
    saved: list = []

    def before_step(opt, args, kwargs):
        saved.clear()
        for group in opt.param_groups:
            if not group["lazy_rows"]:
                continue
            for param in group["params"]:
                if param.grad is None or param.ndim < 2:
                    continue
                idle = (param.grad.abs().sum(dim=tuple(range(1, param.ndim))) == 0).nonzero().squeeze(1)
                state = opt.state[param]
                rows = {key: value[idle].clone() for key, value in state.items() if _row_shaped(value, param)}
                saved.append((param, idle, param.detach()[idle].clone(), rows))

    def after_step(opt, args, kwargs):
        with torch.no_grad():
            for param, idle, param_rows, state_rows in saved:
                param[idle] = param_rows
                for key, value in opt.state[param].items():
                    if _row_shaped(value, param):
                        value[idle] = state_rows[key] if key in state_rows else 0
        saved.clear()

    optimizer.register_step_pre_hook(before_step)
    optimizer.register_step_post_hook(after_step)


def _row_shaped(value, param: torch.Tensor) -> bool:
    return isinstance(value, torch.Tensor) and value.shape == param.shape
