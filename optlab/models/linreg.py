"""Linear regression student for Exp A (scaling-laws.md §5): w_0 = w* + e_0, |e_0| = `init_distance`.

Loss: batch mean of ½(xᵀw − y)². With x ~ N(0, H), H = diag(h) the population loss is
½(w − w*)ᵀH(w − w*) + ½σ², logged exactly as `population_loss`; h is the `hessian_diagonal` (SGD on it has η*(B) = B/(B + d + 1) for every horizon when σ = 0).
"""

from __future__ import annotations

import torch
from torch import nn

from optlab.config import LinearRegressionConfig


class LinearRegression(nn.Module):
    def __init__(self, config: LinearRegressionConfig, teacher: torch.Tensor, label_noise: float,
                 curvature: torch.Tensor):
        super().__init__()
        self.dim = len(teacher)
        self.window_length = self.dim + 1
        self.label_noise = label_noise
        self.register_buffer("teacher", teacher.clone())
        self.register_buffer("hessian_diagonal", curvature.clone())
        direction = torch.randn(self.dim, dtype=teacher.dtype)
        start = teacher + config.init_distance * direction / direction.norm()
        self.weight = nn.Parameter(start.unsqueeze(0))  # [1, d]: a matrix, like nn.Linear(d, 1).weight

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        inputs, targets = batch[:, : self.dim], batch[:, self.dim]
        residual = inputs.to(self.weight.dtype) @ self.weight[0] - targets.to(self.weight.dtype)
        return 0.5 * residual.pow(2).mean()

    @torch.no_grad()
    def extra_metrics(self) -> dict[str, float]:
        error = self.weight[0] - self.teacher.to(self.weight.dtype)
        curvature = self.hessian_diagonal.to(error.dtype)
        return {"population_loss": (0.5 * (curvature * error.pow(2)).sum() + 0.5 * self.label_noise**2).item()}
