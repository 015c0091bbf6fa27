"""Linear regression student for Exp A and D0 (docs/science/scaling-laws.md §2): w_0 = w* + e_0.

Loss: batch mean of ½(xᵀw − y)². With x ~ N(0, H), H = diag(h), label noise s and e = w − w*:
    population_loss = ½eᵀHe + ½s²,  excess_loss = ½eᵀHe,  relative_excess_loss = excess / its value at e_0
(isotropic, s = 0: SGD has η*(B) = B/(B + d + 1) for every horizon). h is the `hessian_diagonal`.

The exact per-example gradient covariance at e (Gaussian x, Exp D0):  Σ = (eᵀHe + s²)·H + He·eᵀH, so
    noise_scale.exact_b_simple = tr Σ/|G|²        = ((eᵀHe + s²)·tr H + |He|²)/|He|²
    noise_scale.exact_b_noise  = tr(HΣ)/(GᵀHG)    = ((eᵀHe + s²)·tr H² + eᵀH³e)/eᵀH³e
with G = He the population gradient (McCandlish et al. 2018, B_simple and the Hessian-weighted B_noise).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from optlab.data.regression import GaussianRegression
from optlab.errors import ConfigError


def start_draw(dim: int, seed: int) -> torch.Tensor:
    """z ~ N(0, I_dim) from NumPy's default_rng(seed): the generator docs/science/scaling-laws.md's Exp D0 numbers were
    computed with, so `start_seed: 123` is the original own problem instance (initial excess loss 1.56)."""
    import numpy as np

    return torch.from_numpy(np.random.default_rng(seed).standard_normal(dim))


class LinearRegression(nn.Module):
    def __init__(self, dataset, init_distance: float = 1.0, start: str = "sphere", start_seed: int | None = None):
        super().__init__()
        if not isinstance(dataset, GaussianRegression):
            raise ConfigError("model.name: linreg needs data.name: linear-regression")
        teacher = dataset.teacher
        self.dim = len(teacher)
        self.window_length = self.dim + 1
        self.label_noise = dataset.label_noise
        self.register_buffer("teacher", teacher.clone())
        self.register_buffer("hessian_diagonal", dataset.curvature.clone())
        draw = torch.randn(self.dim, dtype=teacher.dtype) if start_seed is None else start_draw(self.dim, start_seed)
        error = draw / draw.norm() if start == "sphere" else draw
        initial = teacher + init_distance * error
        self.weight = nn.Parameter(initial.unsqueeze(0))  # [1, d]: a matrix, like nn.Linear(d, 1).weight
        self.initial_excess_loss = self._excess_loss().item()

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        inputs, targets = batch[:, : self.dim], batch[:, self.dim]
        residual = inputs.to(self.weight.dtype) @ self.weight[0] - targets.to(self.weight.dtype)
        return 0.5 * residual.pow(2).mean()

    @torch.no_grad()
    def _excess_loss(self) -> torch.Tensor:
        error = self.weight[0] - self.teacher.to(self.weight.dtype)
        return 0.5 * (self.hessian_diagonal.to(error.dtype) * error.pow(2)).sum()

    @torch.no_grad()
    def exact_metrics(self) -> dict[str, float]:
        h = self.hessian_diagonal.double()
        error = self.weight[0].double() - self.teacher.double()
        excess = 0.5 * (h * error.pow(2)).sum().item()
        scale = 2 * excess + self.label_noise**2  # eᵀHe + s²
        gradient_sq, curved = (h * error).pow(2).sum().item(), (h.pow(3) * error.pow(2)).sum().item()
        return {"population_loss": excess + 0.5 * self.label_noise**2, "excess_loss": excess,
                "relative_excess_loss": excess / self.initial_excess_loss if self.initial_excess_loss else 0.0,
                "noise_scale.exact_b_simple": (scale * h.sum().item() + gradient_sq) / gradient_sq if gradient_sq else math.inf,
                "noise_scale.exact_b_noise": (scale * h.pow(2).sum().item() + curved) / curved if curved else math.inf}
