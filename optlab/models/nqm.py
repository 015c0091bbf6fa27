"""Noisy quadratic model (docs/science/scaling-laws.md §2, Exp B/C), `replicas` independent copies in one tensor.

    L(e) = ½ eᵀHe,   H = (1 − ρ)·I + ρ·11ᵀ  (d × d, positive definite for 0 ≤ ρ < 1)
    e_0 = c·1 with c = g_0/(1 + ρ(d − 1)), so that g = He_0 = g_0·1 (aligned signs, equal magnitudes).

forward(noise) returns Σ_r [½ e_rᵀHe_r + σ·noise_rᵀe_r]: the sum over copies gives each copy its own
gradient, g_r + σ·noise_r = g_r + (σ/√B)·z_r. `exact_metrics` reports the noise-free population loss
averaged over copies; after one step that is the Monte-Carlo estimate of E[L(w − ηφ)], the one-step
criterion of Exp B and C.
"""

from __future__ import annotations

import torch
from torch import nn

from optlab.data.noise import GaussianNoise
from optlab.errors import ConfigError


class NoisyQuadratic(nn.Module):
    def __init__(self, dataset, correlation: float = 0.0, gradient_scale: float = 1.0, noise_std: float = 1000**0.5):
        super().__init__()
        if not isinstance(dataset, GaussianNoise):
            raise ConfigError("model.name: nqm needs data.name: gaussian-noise")
        dim, replicas = dataset.dim, dataset.replicas
        self.window_length = dim
        self.rho, self.noise_std = correlation, noise_std
        start = gradient_scale / (1 + self.rho * (dim - 1))
        self.error = nn.Parameter(torch.full((replicas, dim), start, dtype=torch.float64))

    def curvature_times(self, error: torch.Tensor) -> torch.Tensor:
        """H·e for each copy, without forming H: (1 − ρ)e + ρ·(Σ e)·1."""
        return (1 - self.rho) * error + self.rho * error.sum(dim=-1, keepdim=True)

    def population_losses(self) -> torch.Tensor:
        return 0.5 * (self.error * self.curvature_times(self.error)).sum(dim=-1)

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        noise = noise.to(self.error.dtype)
        return self.population_losses().sum() + self.noise_std * (noise * self.error).sum()

    @torch.no_grad()
    def exact_metrics(self) -> dict[str, float]:
        return {"population_loss": self.population_losses().mean().item()}
