"""Embedding statistics per frequency bucket (embedding-drift.md §6).

Buckets by expected-frequency rank r of the token (V = vocabulary size):
    frequent = top 5 % of ranks, mid = next 45 %, rare = bottom 50 %.
With λ the weight decay of the optimizer that updates the embedding:
    max_abs_x_lambda      max |w|·λ over the bucket's entries
    rms_x_lambda          sqrt(mean w²)·λ
    saturated_fraction    share of entries with |w|·λ ≥ 0.9  (pinned near ±1/λ)
λ = 0 leaves the ·λ metrics undefined (NaN); `max_abs` is logged in any case.
Also: `embedding.stale_momentum_rows`, the number of rows whose gradient is exactly 0 while their
momentum is not, i.e. rows still being moved by stale momentum (§4).
"""

from __future__ import annotations

import math

import torch

SATURATION_LEVEL = 0.9
BUCKETS = {"frequent": (0.0, 0.05), "mid": (0.05, 0.5), "rare": (0.5, 1.0)}
MOMENTUM_KEYS = ("momentum", "exp_avg", "momentum_buffer")


def bucket_masks(token_rank: torch.Tensor) -> dict[str, torch.Tensor]:
    """Boolean row masks per bucket, from 1-based ranks: bucket (lo, hi] of the rank fraction r/V."""
    fraction = token_rank.double() / len(token_rank)
    return {name: (fraction > lo) & (fraction <= hi) for name, (lo, hi) in BUCKETS.items()}


def embedding_decay(embedding: torch.nn.Parameter, optimizers) -> float:
    """λ of the param group that holds `embedding`."""
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            if any(param is embedding for param in group["params"]):
                return float(group["weight_decay"])
    raise ValueError("the embedding is not in any optimizer")


def embedding_metrics(weight: torch.Tensor, decay: float, masks: dict[str, torch.Tensor]) -> dict[str, float]:
    metrics = {}
    weight = weight.detach().float().cpu()
    for bucket, mask in masks.items():
        rows = weight[mask]
        max_abs = rows.abs().max().item() if rows.numel() else math.nan
        rms = rows.pow(2).mean().sqrt().item() if rows.numel() else math.nan
        metrics[f"embedding.{bucket}.max_abs"] = max_abs
        metrics[f"embedding.{bucket}.max_abs_x_lambda"] = max_abs * decay if decay else math.nan
        metrics[f"embedding.{bucket}.rms_x_lambda"] = rms * decay if decay else math.nan
        saturated = (rows.abs() * decay >= SATURATION_LEVEL).float().mean().item() if decay and rows.numel() else math.nan
        metrics[f"embedding.{bucket}.saturated_fraction"] = saturated
    return metrics


def stale_momentum_rows(embedding: torch.nn.Parameter, optimizers) -> float:
    """Rows with an exactly-zero gradient but a non-zero momentum (NaN if the optimizer has no momentum)."""
    if embedding.grad is None:
        return math.nan
    for optimizer in optimizers:
        state = optimizer.state.get(embedding, {})
        momentum = next((state[key] for key in MOMENTUM_KEYS if key in state), None)
        if momentum is not None:
            idle = embedding.grad.abs().sum(dim=1) == 0
            moving = momentum.abs().sum(dim=1) != 0
            return float((idle & moving).sum().item())
    return math.nan
