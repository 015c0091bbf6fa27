"""Gradient noise for the noisy quadratic model (docs/science/scaling-laws.md §3): a batch of size B is one draw
z/sqrt(B), z ~ N(0, I) of shape [replicas, dim] — distributionally the mean of B per-example noises
with unit covariance, without drawing B of them. The same seed gives the same z for every lr (common
random numbers across the lr grid)."""

from __future__ import annotations

import torch

from optlab.data.dataset import Dataset


class GaussianNoise(Dataset):
    def __init__(self, seed: int, dim: int = 64, replicas: int = 4000):
        super().__init__(seed)
        self.dim, self.replicas = dim, replicas

    def sample(self, batch_size: int, length: int, split: str = "train") -> torch.Tensor:
        noise = torch.randn(self.replicas, self.dim, generator=self.generators[split], dtype=torch.float64)
        return noise / batch_size**0.5
