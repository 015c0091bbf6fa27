"""Gradient noise scales measured from fresh training examples at fixed parameters (docs/science/scaling-laws.md §2,
Exp D, measurements (1)–(3); McCandlish et al. 2018, §2 and App. A).

With g_k the gradient of example k, G = E g_k and Σ = Cov(g_k):

(1) per-example gradients of N examples (torch.func: vmap of grad):
        tr Σ   = Σ_i of the per-coordinate sample variances
        |G|²   = |ḡ|² − tr Σ/N                (unbiased)
        B_simple = tr Σ / |G|²
(2) the two-batch estimator at the same parameters: R repeats of a big batch (B_big) and its first B_small
    examples; |G|²_est = (B_big|G_big|² − B_small|G_small|²)/(B_big − B_small) and
    S_est = (|G_small|² − |G_big|²)/(1/B_small − 1/B_big), each averaged over the repeats before dividing;
(3) the Hessian-weighted B_noise = tr(HΣ)/(GᵀHG) with Hessian-vector products (double backward) of the
    mean loss over `hessian_batch` examples: tr(HΣ) ≈ mean over K examples of δ_kᵀHδ_k with δ_k = g_k − G,
    GᵀHG from one HVP with G the gradient of that batch.

The examples come from the dataset's `probe` split: the training distribution with its own generator,
so that measuring never changes the examples the run trains on.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch.func import functional_call, grad, vmap

from optlab.probes.noise_scale import two_batch_estimates
from optlab.probes.probe import Probe, ProbeContext

PER_EXAMPLE_CHUNK = 256


def per_example_gradient_moments(model: torch.nn.Module, examples: torch.Tensor, keep: int):
    """(Σ_k g_k, Σ_k g_k⊙g_k) in float64 over `examples`, and the first `keep` g_k as rows [keep, P]."""
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    params = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}

    def example_loss(values, example):
        return functional_call(model, values, (example.unsqueeze(0),))

    gradients = vmap(grad(example_loss), in_dims=(None, 0))
    total = squares = None
    kept, kept_count = [], 0
    for chunk in examples.split(PER_EXAMPLE_CHUNK):
        with warnings.catch_warnings():  # attention has no batching rule on CPU: vmap loops, correctly but slower
            warnings.filterwarnings("ignore", message="There is a performance drop")
            rows = gradients(params, chunk)
        flat = torch.cat([rows[name].flatten(1) for name in names], dim=1).double()
        total = flat.sum(0) if total is None else total + flat.sum(0)
        squares = flat.pow(2).sum(0) if squares is None else squares + flat.pow(2).sum(0)
        if kept_count < keep:
            kept.append(flat[: keep - kept_count])
            kept_count += len(kept[-1])
    return total, squares, torch.cat(kept) if kept else None


def per_example_noise_scale(total: torch.Tensor, squares: torch.Tensor, count: int) -> dict[str, float]:
    """Measurement (1) from the moments of `count` per-example gradients."""
    mean = total / count
    trace = ((squares - count * mean.pow(2)) / (count - 1)).sum().item()
    squared_norm = mean.pow(2).sum().item() - trace / count
    return {"noise_scale.sampled_trace_cov": trace, "noise_scale.sampled_grad_norm_sq": squared_norm,
            "noise_scale.sampled_b_simple": trace / squared_norm if squared_norm > 0 else math.nan}


def two_batch_noise_scale(model: torch.nn.Module, draw, small: int, big: int, repeats: int) -> float:
    """Measurement (2): B_simple from `repeats` (small, big) batch-gradient pairs at the same parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    squared_norms, traces = [], []
    for _ in range(repeats):
        batch = draw(big)
        norms = []
        for examples in (batch[:small], batch):
            gradients = torch.autograd.grad(model(examples), params)
            norms.append(sum(g.double().pow(2).sum() for g in gradients).item())
        squared_norm, trace = two_batch_estimates(norms[0], norms[1], small, big)
        squared_norms.append(squared_norm)
        traces.append(trace)
    mean_norm = sum(squared_norms) / repeats
    return (sum(traces) / repeats) / mean_norm if mean_norm > 0 else math.nan


def hessian_weighted_noise_scale(model: torch.nn.Module, batch: torch.Tensor, example_gradients: torch.Tensor) -> float:
    """Measurement (3): tr(HΣ)/(GᵀHG) with H, G the Hessian and gradient of the mean loss over `batch`
    and δ_k = g_k − G from the per-example gradients g_k, rows of `example_gradients` [K, P]."""
    params = [p for p in model.parameters() if p.requires_grad]
    gradient = torch.autograd.grad(model(batch), params, create_graph=True)
    flat_gradient = torch.cat([g.flatten() for g in gradient]).detach()
    sizes = [p.numel() for p in params]

    def curvature_along(vector: torch.Tensor) -> float:
        """vᵀHv by one Hessian-vector product."""
        parts = [piece.view_as(p).to(p.dtype) for piece, p in zip(vector.split(sizes), params)]
        product = torch.autograd.grad(gradient, params, grad_outputs=parts, retain_graph=True)
        return torch.cat([h.flatten() for h in product]).double().dot(vector.double()).item()

    deviations = example_gradients - flat_gradient.double()
    trace_h_cov = sum(curvature_along(row) for row in deviations) / len(deviations)
    along_gradient = curvature_along(flat_gradient)
    return trace_h_cov / along_gradient if along_gradient > 0 else math.nan


def sampled_noise_scales(model: torch.nn.Module, data, config) -> dict[str, float]:
    """Measurements (1)–(3) at the model's current parameters (`config`: probes.sampled_noise_scale)."""
    def draw(count: int) -> torch.Tensor:
        device = next(model.parameters()).device
        return data.sample(count, model.window_length, split="probe").to(device)

    total, squares, kept = per_example_gradient_moments(model, draw(config.examples), config.hessian_examples)
    metrics = per_example_noise_scale(total, squares, config.examples)
    if config.two_batch_repeats:
        metrics["noise_scale.sampled_two_batch_b_simple"] = two_batch_noise_scale(
            model, draw, config.two_batch_small, config.two_batch_big, config.two_batch_repeats)
    if config.hessian_examples:
        metrics["noise_scale.sampled_b_noise"] = hessian_weighted_noise_scale(model, draw(config.hessian_batch), kept)
    return metrics


class SampledNoiseScaleProbe(Probe):
    """`probes.sampled_noise_scale`: measured at θ_0, then at the first probe step where eval_loss is at or
    below each level of `at_eval_loss` (once for all the levels a step reaches), or at every probe step
    when no levels are given. The levels not yet reached are part of the checkpoint."""

    name = "sampled_noise_scale"

    def __init__(self, context: ProbeContext, config):
        self.context, self.config = context, config
        self.levels_pending = sorted(config.at_eval_loss, reverse=True)

    def at_start(self) -> dict:
        return sampled_noise_scales(self.context.model, self.context.data, self.config)

    def measure(self, step: int, row: dict) -> dict:
        if self.config.at_eval_loss and not (self.levels_pending and row["eval_loss"] <= self.levels_pending[0]):
            return {}
        self.levels_pending = [level for level in self.levels_pending if row["eval_loss"] > level]
        return sampled_noise_scales(self.context.model, self.context.data, self.config)

    def state_dict(self) -> dict:
        return {"levels_pending": self.levels_pending}

    def load_state_dict(self, state: dict) -> None:
        self.levels_pending = state.get("levels_pending", self.levels_pending)
