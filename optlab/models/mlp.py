"""Student MLP for the teacher–student classification data (scaling-laws.md §5, Exp D):
d → width → c with ReLU and PyTorch's default init; loss = mean cross-entropy of the batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from optlab.config import MLPClassifierConfig


class MLPClassifier(nn.Module):
    def __init__(self, config: MLPClassifierConfig, dim: int, classes: int):
        super().__init__()
        self.dim = dim
        self.window_length = dim + 1
        self.net = nn.Sequential(nn.Linear(dim, config.width), nn.ReLU(), nn.Linear(config.width, classes))

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        inputs, labels = batch[:, : self.dim], batch[:, self.dim].long()
        return F.cross_entropy(self.net(inputs.to(self.net[0].weight.dtype)), labels)
