"""Update size relative to parameter size (docs/science/optimizers.md; docs/science/other-effects.md §5).

For the parameters of each kind, with Δ = θ_after − θ_before over one optimizer step:
    update_rms = sqrt(mean Δ²),   param_rms = sqrt(mean θ_before²),   update_to_param_rms = their ratio,
    update_rms_over_lr = sqrt(mean (Δ/η)²)  with η each tensor's param-group lr at that step: the
                         lr-normalised update RMS of docs/science/other-effects.md §5 (1 for Lion, ≈ 0.2 for AdamW;
                         it includes decoupled weight decay, so measure it with weight_decay 0).
    update_weight_cosine = Σ Δ_u·θ / (‖Δ_u‖·‖θ‖)  with Δ_u = Δ + η·λ·θ_before, the step without its decoupled
                         decay (λ the group's weight_decay; exact for θ ← θ − ηλθ − η·u: AdamW, Lion, Signum,
                         SignSGD): > 0 the step points away from 0 and grows the weights, 0 it is orthogonal to
                         them (the premise of the norm closed form of docs/science/other-effects.md §3.3).
Logged globally and per kind (`update_rms.matrix`, ...).
"""

from __future__ import annotations

import math

import torch

from optlab.probes.probe import Probe, ProbeContext


def snapshot(parameters: dict[str, torch.nn.Parameter]) -> dict[str, torch.Tensor]:
    return {name: param.detach().clone() for name, param in parameters.items()}


def parameter_lrs(optimizers: list[torch.optim.Optimizer]) -> dict[torch.Tensor, tuple[float, float]]:
    """The (lr, weight_decay) each parameter's param group applies now (read before the step and the scheduler move)."""
    return {param: (group["lr"], group.get("weight_decay", 0.0))
            for optimizer in optimizers for group in optimizer.param_groups for param in group["params"]}


def update_metrics(before: dict[str, torch.Tensor], parameters: dict[str, torch.nn.Parameter], kinds: dict[str, str],
                   lrs: dict[torch.Tensor, tuple[float, float]]) -> dict[str, float]:
    names = list(before)
    old = [before[name] for name in names]
    deltas = torch._foreach_sub([parameters[name].detach() for name in names], old)
    settings = [lrs.get(parameters[name], (math.nan, 0.0)) for name in names]
    undecayed = torch._foreach_add(deltas, torch._foreach_mul(old, [lr * decay if decay else 0.0 for lr, decay in settings]))
    squares = torch.stack([torch.stack(torch._foreach_norm(deltas)) ** 2, torch.stack(torch._foreach_norm(old)) ** 2,
                           torch.stack(torch._foreach_norm(undecayed)) ** 2,
                           torch.stack([(step * weight).sum() for step, weight in zip(undecayed, old)])])
    delta_sq, param_sq, undecayed_sq, outward = squares.double().tolist()  # one host-device sync for all tensors
    sums: dict[str, list[float]] = {}
    for name, delta, param, step_sq, dot, tensor, (lr, _) in zip(names, delta_sq, param_sq, undecayed_sq, outward, old, settings):
        for key in ("all", kinds[name]):
            totals = sums.setdefault(key, [0.0, 0.0, 0.0, 0, 0.0, 0.0])
            totals[0] += delta
            totals[1] += param
            totals[2] += delta / lr**2 if lr else math.nan
            totals[3] += tensor.numel()
            totals[4] += step_sq
            totals[5] += dot
    metrics = {}
    for key, (delta, param, delta_per_lr, count, step_sq, dot) in sums.items():
        suffix = "" if key == "all" else f".{key}"
        update_rms, param_rms = math.sqrt(delta / count), math.sqrt(param / count)
        metrics[f"update_rms{suffix}"] = update_rms
        metrics[f"update_rms_over_lr{suffix}"] = math.sqrt(delta_per_lr / count)
        metrics[f"param_rms{suffix}"] = param_rms
        metrics[f"update_to_param_rms{suffix}"] = update_rms / param_rms if param_rms else math.nan
        metrics[f"update_weight_cosine{suffix}"] = dot / math.sqrt(step_sq * param) if step_sq * param > 0 else math.nan
    return metrics


class UpdateProbe(Probe):
    """The update and parameter RMS of each probe step, globally and per parameter kind."""

    name = "updates"

    def __init__(self, context: ProbeContext):
        self.context = context
        self.before: dict[str, torch.Tensor] = {}
        self.lrs: dict[torch.Tensor, float] = {}

    def before_step(self, step: int) -> None:
        self.before = snapshot(self.context.parameters)
        self.lrs = parameter_lrs(self.context.optimizers)

    def measure(self, step: int, row: dict) -> dict:
        return update_metrics(self.before, self.context.parameters, self.context.kinds, self.lrs)
