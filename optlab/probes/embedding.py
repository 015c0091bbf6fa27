"""Embedding statistics per frequency bucket (docs/science/embedding-drift.md §6).

Buckets by expected-frequency rank r of the token (V = vocabulary size):
    frequent = top 5 % of ranks, mid = next 45 %, rare = bottom 50 %.
With λ the weight decay of the optimizer that updates the embedding:
    max_abs_x_lambda      max |w|·λ over the bucket's entries
    rms_x_lambda          sqrt(mean w²)·λ
    saturated_fraction    share of entries with |w|·λ ≥ 0.9  (pinned near ±1/λ)
λ = 0 leaves the ·λ metrics undefined (NaN); `max_abs` is logged in any case.
Also: `embedding.stale_momentum_rows`, the number of rows whose gradient is exactly 0 while their
momentum is not, i.e. rows still being moved by stale momentum (§4).

Idle time (§7): a token is seen at a step when it occurs at an input position of a training window (all
positions but the last). For a row last seen at step s, its own envelope after the run's k steps so far is
e_row = 1 − Π_{s<t<k} (1 − η_tλ) (η_t the embedding's lr at step t); rows seen at least once with
e_row ≥ LONG_IDLE_ENVELOPE are the long-idle rows, every entry of which a stale sign drives to |w|·λ ≥ 0.9:
    embedding.long_idle.rows                  how many
    embedding.long_idle.saturated_fraction    the saturated share of their entries
    embedding.<bucket>.long_idle_share        the share of the bucket's rows that are long-idle
    weights.saturated_fraction                the saturated share of the other decayed weights (|w|·λ ≥ 0.9)
At the end of a finished run the final embedding (× λ), the last-seen steps and the row envelopes go to
embedding.npz, for the report's per-row figures and the list of pinned tokens.

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
LONG_IDLE_ENVELOPE = 0.95  # 1 − 2(1 − e) ≥ 0.9: saturated from any start in [−1/λ, 1/λ] (§7)


def bucket_masks(token_rank: torch.Tensor) -> dict[str, torch.Tensor]:
    """Boolean row masks per bucket, from 1-based ranks: bucket (lo, hi] of the rank fraction r/V."""
    fraction = token_rank.double() / len(token_rank)
    return {name: (fraction > lo) & (fraction <= hi) for name, (lo, hi) in FREQUENCY_BUCKETS.items()}


def embedding_group(embedding: torch.nn.Parameter, optimizers) -> dict:
    """The param group that holds `embedding`."""
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            if any(param is embedding for param in group["params"]):
                return group
    raise ValueError("the embedding is not in any optimizer")


def embedding_decay(embedding: torch.nn.Parameter, optimizers) -> float:
    """λ of the param group that holds `embedding`."""
    return float(embedding_group(embedding, optimizers)["weight_decay"])


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
        self.group = embedding_group(self.embedding, context.optimizers)
        self.decay = float(self.group["weight_decay"])
        self.token_rank = token_ranks(context.data)
        self.masks = {bucket: mask.to(context.device) for bucket, mask in bucket_masks(self.token_rank).items()}
        self.last_seen = torch.full((len(self.token_rank),), -1, dtype=torch.long, device=context.device)
        self.log_survival = [0.0]  # Σ_{t<k} log(1 − η_tλ) for k = 0, 1, ...: the row envelopes' products
        self.other_weights = [(param, float(group["weight_decay"])) for optimizer in context.optimizers
                              for group in optimizer.param_groups if group["weight_decay"] > 0
                              for param in group["params"] if param is not self.embedding]

    def on_batch(self, step: int, batch) -> None:
        self.last_seen[batch[:, :-1].reshape(-1)] = step  # the input positions: all but the last
        if len(self.log_survival) == step + 1:  # once per step (the first micro-batch), at this step's lr
            factor = 1 - float(self.group["lr"]) * self.decay
            self.log_survival.append(self.log_survival[-1] + (math.log(factor) if factor > 0 else -math.inf))

    def row_envelopes(self, steps: int) -> torch.Tensor:
        """e_row = 1 − Π_{s<t<steps}(1 − η_tλ) for each row last seen at s (NaN: never seen)."""
        survival = torch.tensor(self.log_survival[: steps + 1], dtype=torch.float64, device=self.last_seen.device)
        seen = self.last_seen >= 0
        since = survival[(self.last_seen + 1).clamp(max=steps)]
        envelope = 1 - torch.exp(survival[steps] - since)
        return torch.where(seen, envelope, torch.full_like(envelope, math.nan))

    def measure(self, step: int, row: dict) -> dict:
        metrics = embedding_metrics(self.embedding, self.decay, self.masks)
        metrics["embedding.stale_momentum_rows"] = stale_momentum_rows(self.embedding, self.optimizers)
        metrics.update(self.idle_metrics(step + 1))
        return metrics

    def idle_metrics(self, steps: int) -> dict[str, float]:
        long_idle = self.row_envelopes(steps) >= LONG_IDLE_ENVELOPE  # NaN (never seen) compares False
        weight = self.embedding.detach().float()
        metrics = {"embedding.long_idle.rows": float(long_idle.sum())}
        saturated = (weight[long_idle].abs() * self.decay >= SATURATION_LEVEL).float()
        metrics["embedding.long_idle.saturated_fraction"] = (saturated.mean().item() if self.decay and saturated.numel()
                                                             else math.nan)
        for bucket, mask in self.masks.items():
            metrics[f"embedding.{bucket}.long_idle_share"] = long_idle[mask].float().mean().item() if mask.any() else math.nan
        if self.other_weights:
            entries = sum(param.numel() for param, _ in self.other_weights)
            pinned = sum(int((param.detach().abs() * decay >= SATURATION_LEVEL).sum()) for param, decay in self.other_weights)
            metrics["weights.saturated_fraction"] = pinned / entries
        return metrics

    def state_dict(self) -> dict:
        return {"last_seen": self.last_seen.clone(), "log_survival": torch.tensor(self.log_survival, dtype=torch.float64)}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.last_seen.copy_(state["last_seen"])
            self.log_survival = state["log_survival"].tolist()

    def at_end(self, run_dir: Path) -> None:
        """The final embedding (× λ when λ > 0), the last-seen steps and the row envelopes for the report's
        per-row plots and pinned-token list, written atomically."""
        import numpy as np

        scale = self.decay if self.decay else 1.0
        steps = len(self.log_survival) - 1
        temporary = run_dir / ".embedding.tmp.npz"
        np.savez_compressed(temporary, weight_x_lambda=(self.embedding.detach().float().cpu() * scale).numpy(),
                            token_rank=self.token_rank.numpy(), decay=np.float64(self.decay),
                            last_seen=self.last_seen.cpu().numpy(), row_envelope=self.row_envelopes(steps).cpu().numpy())
        temporary.replace(run_dir / "embedding.npz")


def token_ranks(dataset) -> torch.Tensor | None:
    """The dataset's 1-based frequency rank of each token id (optional member of the dataset protocol)."""
    return getattr(dataset, "token_rank", None)
