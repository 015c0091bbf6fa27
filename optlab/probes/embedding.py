"""Embedding statistics per frequency bucket (docs/science/embedding-drift.md §6).

Buckets by expected-frequency rank r of the token (V = vocabulary size):
    frequent = top 5 % of ranks, mid = next 45 %, rare = bottom 50 %.
With λ the weight decay of the optimizer that updates the embedding:
    max_abs_x_lambda      max |w|·λ over the bucket's entries
    rms_x_lambda          sqrt(mean w²)·λ
    saturated_fraction    share of entries with |w|·λ ≥ 0.9  (pinned near ±1/λ)
λ = 0 leaves the ·λ metrics undefined (NaN); `max_abs` is logged in any case.
Also: `embedding.stale_momentum_rows`, the number of rows whose gradient is exactly 0 while their
momentum is not, i.e. rows still being moved by stale momentum (§4). At the end of a finished run the
final embedding (× λ) goes to embedding.npz, for the report's per-row figures.

The probe needs the model's `token_embedding` and the dataset's `token_rank` (the protocols of
optlab/models and optlab/data); it is skipped without them.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from optlab.probes.probe import Probe, ProbeContext
from optlab.probes.schema import FREQUENCY_BUCKETS, SATURATION_LEVEL

MOMENTUM_KEYS = ("momentum", "exp_avg", "momentum_buffer")


def bucket_masks(token_rank: torch.Tensor) -> dict[str, torch.Tensor]:
    """Boolean row masks per bucket, from 1-based ranks: bucket (lo, hi] of the rank fraction r/V."""
    fraction = token_rank.double() / len(token_rank)
    return {name: (fraction > lo) & (fraction <= hi) for name, (lo, hi) in FREQUENCY_BUCKETS.items()}


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


class EmbeddingProbe(Probe):
    name = "embedding"

    @staticmethod
    def applies(context: ProbeContext) -> bool:
        return context.capabilities.token_embedding is not None and token_ranks(context.data) is not None

    def __init__(self, context: ProbeContext):
        self.embedding = context.capabilities.token_embedding.weight
        self.optimizers = context.optimizers
        self.decay = embedding_decay(self.embedding, context.optimizers)
        self.token_rank = token_ranks(context.data)
        self.masks = {bucket: mask.to(context.device) for bucket, mask in bucket_masks(self.token_rank).items()}

    def measure(self, step: int, row: dict) -> dict:
        metrics = embedding_metrics(self.embedding, self.decay, self.masks)
        metrics["embedding.stale_momentum_rows"] = stale_momentum_rows(self.embedding, self.optimizers)
        return metrics

    def at_end(self, run_dir: Path) -> None:
        """The final embedding (× λ when λ > 0) for the report's per-row plots, written atomically."""
        import numpy as np

        scale = self.decay if self.decay else 1.0
        temporary = run_dir / ".embedding.tmp.npz"
        np.savez_compressed(temporary, weight_x_lambda=(self.embedding.detach().float().cpu() * scale).numpy(),
                            token_rank=self.token_rank.numpy(), decay=np.float64(self.decay))
        temporary.replace(run_dir / "embedding.npz")


def token_ranks(dataset) -> torch.Tensor | None:
    """The dataset's 1-based frequency rank of each token id (optional member of the dataset protocol)."""
    return getattr(dataset, "token_rank", None)
