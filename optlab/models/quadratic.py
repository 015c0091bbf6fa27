"""A separable quadratic with a known Hessian, for "Adam's v as a Hessian estimate" (docs/science/other-effects.md §2;
Su, kexue.fm/archives/10588):

    L(θ) = ½ Σ_i h_i θ_i²,   h log-spaced over `curvature_range`,   θ* = 0,   g = Hθ.

forward(noise) with noise = [z_1; z_2] (two standard normal draws from the gaussian-noise data):
    ½ Σ h_i (θ_i + σ z_1i)² + s·z_2ᵀθ      gradient H(θ + σz_1) + s·z_2
σ = `point_noise` (regime A: the gradient at a point scattered around θ*), s = `gradient_noise`
(regime D: additive noise independent of H). `relative_noise` ν adds ν·‖Hθ‖/√d·z_2 instead, noise that
shrinks with the gradient, so that a sign update keeps a constant convergence rate
p = E cos(sign(g), θ − θ*) ≈ √(2/π)/ν for ν ≳ 2 (docs/science/other-effects.md §3.4). `population_loss` is the
noise-free L(θ).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from optlab.data.noise import GaussianNoise
from optlab.errors import ConfigError


class DiagonalQuadratic(nn.Module):
    def __init__(self, dataset, curvature_range: tuple[float, float] = (1e-2, 10.0), init_distance: float = 1.0,
                 point_noise: float = 0.0, gradient_noise: float = 0.0, relative_noise: float = 0.0):
        super().__init__()
        if not isinstance(dataset, GaussianNoise) or dataset.replicas < 2:
            raise ConfigError("model.name: quadratic needs data.name: gaussian-noise with replicas: 2 (one draw for "
                              "the point noise, one for the gradient noise)")
        dim = dataset.dim
        self.window_length = dim
        self.point_noise, self.gradient_noise, self.relative_noise = point_noise, gradient_noise, relative_noise
        low, high = curvature_range
        self.register_buffer("hessian_diagonal", torch.logspace(math.log10(low), math.log10(high), dim, dtype=torch.float64))
        self.theta = nn.Parameter(torch.full((dim,), init_distance / math.sqrt(dim), dtype=torch.float64))

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        noise = noise.to(self.theta.dtype)
        point = self.theta + self.point_noise * noise[0]
        # the noise terms are linear in θ with constant (detached) coefficients: their gradient is the noise itself
        scale = self.gradient_noise + self.relative_noise * (self.hessian_diagonal * self.theta).norm().detach() / self.theta.numel() ** 0.5
        return 0.5 * (self.hessian_diagonal * point.pow(2)).sum() + scale * (noise[1] * self.theta).sum()

    @torch.no_grad()
    def exact_metrics(self) -> dict[str, float]:
        return {"population_loss": (0.5 * (self.hessian_diagonal * self.theta.pow(2)).sum()).item()}
