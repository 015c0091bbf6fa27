"""Student MLP for the teacher–student classification data (docs/science/scaling-laws.md §2, Exp D):
d → width → c with ReLU and PyTorch's default init; loss = mean cross-entropy of the batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from optlab.data.teacher import TeacherClassification
from optlab.errors import ConfigError


class MLPClassifier(nn.Module):
    def __init__(self, dataset, width: int = 64):
        super().__init__()
        if not isinstance(dataset, TeacherClassification):
            raise ConfigError("model.name: mlp needs data.name: teacher-classification")
        self.dim = dim = dataset.dim
        self.window_length = dim + 1
        self.net = nn.Sequential(nn.Linear(dim, width), nn.ReLU(), nn.Linear(width, dataset.classes))

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        inputs, labels = batch[:, : self.dim], batch[:, self.dim].long()
        return F.cross_entropy(self.net(inputs.to(self.net[0].weight.dtype)), labels)
