"""Parameter kinds, routing rules and lazy embedding rows.

Kinds: `embedding` (nn.Embedding weights), `head` (the output projection), `bias` (any parameter named
*bias), `norm` (LayerNorm gains), `matrix` (every other tensor with ≥ 2 dimensions).

Routing (config `param_groups`): each parameter takes the first rule that matches its kind / name; the
rule may give it another optimizer, an lr multiplier and its own weight decay; kinds in `no_decay` get
none. A spec may hand some kinds to another (Muon sends all but matrices to its AdamW). Parameters sharing (optimizer, lr, decay, kind, laziness) form one param group, and each distinct
optimizer spec becomes one torch optimizer.

Lazy rows (fix (a), embedding-drift.md §5): for groups with `lazy_rows`, a step pre-hook records the
rows whose gradient row is exactly zero (Σ_j |g_ij| = 0) and a post-hook puts those rows of the
parameter and of every same-shaped state tensor back as they were (zeros for state created this step):
such rows get no decay, no momentum change and no move, whatever the optimizer. Per-tensor counters
(AdamW's `step`) still advance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from optlab.config import ExperimentConfig, OptimizerSpec
from optlab.optim.registry import build_optimizer


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


@dataclass
class Placement:
    """Where one parameter goes: which optimizer spec, with which lr and decay."""

    spec: OptimizerSpec
    lr: float
    weight_decay: float
    kind: str
    lazy_rows: bool


def place_parameters(model: nn.Module, config: ExperimentConfig) -> dict[str, Placement]:
    rules = config.param_groups.resolved_rules()
    placements = {}
    for name, kind in parameter_kinds(model).items():
        rule = next((rule for rule in rules if rule.matches(name, kind)), None)
        spec = (rule.optimizer if rule is not None and rule.optimizer is not None else config.optimizer).route(kind)
        lr = spec.lr * (rule.lr_scale if rule is not None else 1.0)
        own_decay = getattr(spec, "weight_decay", 0.0)  # Amos has no weight_decay: its decay is adaptive
        weight_decay = rule.weight_decay if rule is not None and rule.weight_decay is not None else own_decay
        if kind in config.param_groups.no_decay:
            weight_decay = 0.0
        lazy = config.param_groups.lazy_embeddings and kind == "embedding"
        placements[name] = Placement(spec, lr, weight_decay, kind, lazy)
    return placements


def build_optimizers(model: nn.Module, config: ExperimentConfig) -> list[torch.optim.Optimizer]:
    """One torch optimizer per distinct optimizer spec, with param groups per (lr, decay, kind, lazy)."""
    parameters = dict(model.named_parameters())
    by_spec: dict[str, tuple[OptimizerSpec, dict]] = {}
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
    for spec, groups in by_spec.values():
        optimizer = build_optimizer(spec, list(groups.values()), config.training.accumulation()[0])
        if any(group["lazy_rows"] for group in optimizer.param_groups):
            install_lazy_rows(optimizer)
        optimizers.append(optimizer)
    return optimizers


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
