"""Noiseless (or noisy) linear regression with Gaussian inputs (docs/science/scaling-laws.md §2, Exp A and D0).

x ~ N(0, H) with H = diag(h) (`curvature`; h = 1 unless a spectrum is chosen), y = xᵀw* + σ·ε. A batch is a float tensor [B, d + 1]: the inputs, then the target.
The teacher w* ~ N(0, I_d) is fixed by the seed. Data are float64, so that a float64 model can reach
losses far below float32's resolution (Exp A's best runs end near 1e-38); with `teacher: zero` nothing
limits the relative precision of e = w − w* (a Gaussian w* would floor |e| near |w*|·1e-16). With the per-example loss ½(xᵀw − y)² the
population loss is ½(w − w*)ᵀH(w − w*) + ½σ², which the linear-regression model reports exactly.
"""

from __future__ import annotations

import math

import torch

from optlab.data.dataset import Dataset


def input_spectrum(spectrum: str, dim: int, spectrum_range: tuple[float, float]) -> torch.Tensor:
    """The diagonal h of the input covariance (= the loss Hessian), float64."""
    if spectrum == "log-spaced":
        low, high = spectrum_range
        return torch.logspace(math.log10(low), math.log10(high), dim, dtype=torch.float64)
    if spectrum == "harmonic":
        return 1 / torch.arange(1, dim + 1, dtype=torch.float64)
    return torch.ones(dim, dtype=torch.float64)


class GaussianRegression(Dataset):
    def __init__(self, seed: int, dim: int = 63, label_noise: float = 0.0, teacher: str = "gaussian",
                 spectrum: str = "isotropic", spectrum_range: tuple[float, float] = (1e-2, 10.0)):
        super().__init__(seed)
        self.dim, self.label_noise = dim, label_noise
        self.teacher = torch.randn(dim, generator=torch.Generator().manual_seed(seed + 7919), dtype=torch.float64)
        if teacher == "zero":
            self.teacher.zero_()
        self.curvature = input_spectrum(spectrum, dim, spectrum_range)
        self.input_scale = None if spectrum == "isotropic" else self.curvature.sqrt()

    def sample(self, batch_size: int, length: int, split: str = "train") -> torch.Tensor:
        generator = self.generators[split]
        inputs = torch.randn(batch_size, self.dim, generator=generator, dtype=torch.float64)
        if self.input_scale is not None:
            inputs = inputs * self.input_scale
        targets = inputs @ self.teacher
        if self.label_noise:
            targets = targets + self.label_noise * torch.randn(batch_size, generator=generator, dtype=torch.float64)
        return torch.cat([inputs, targets.unsqueeze(1)], dim=1)
