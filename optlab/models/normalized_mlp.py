"""A classifier whose function does not depend on the scale of any weight matrix (docs/science/other-effects.md
§3.2): every matrix is followed by a normalisation without gain or ε,

    h_0 = x,   h_l = relu(n(W_l h_{l−1})),   logits = τ·n(W_head h_L),   n(z) = z / RMS(z)  (over features),

so f(…, s·W_l, …) = f(…, W_l, …) for any s > 0 and each matrix separately, and ∇_W L(sW) = ∇_W L(W)/s.
There are no biases (a bias would break the invariance). Each matrix starts N(0, σ²) with σ = init_scale/√fan_in.
The loss is the batch-mean cross-entropy on the teacher–student data. With init_scale a power of 2 every
rescaling is exact in floating point, so a rule that predicts an invariant trajectory can be checked bit for bit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from optlab.data.teacher import TeacherClassification
from optlab.errors import ConfigError


def normalize(z: torch.Tensor) -> torch.Tensor:
    """z / RMS(z) over the last axis, with no ε (an ε would make the function depend on the scale)."""
    return z / z.pow(2).mean(dim=-1, keepdim=True).sqrt()


class NormalizedMLP(nn.Module):
    def __init__(self, dataset, width: int = 64, depth: int = 2, temperature: float = 2.0, init_scale: float = 1.0):
        super().__init__()
        if not isinstance(dataset, TeacherClassification):
            raise ConfigError("model.name: normalized-mlp needs data.name: teacher-classification")
        self.dim, self.temperature = dataset.dim, temperature
        self.window_length = dataset.dim + 1
        sizes = [dataset.dim] + [width] * depth
        self.layers = nn.ModuleList(nn.Linear(fan_in, fan_out, bias=False) for fan_in, fan_out in zip(sizes, sizes[1:]))
        self.head = nn.Linear(width, dataset.classes, bias=False)
        with torch.no_grad():
            for linear in [*self.layers, self.head]:
                linear.weight.normal_(0.0, init_scale / linear.in_features**0.5)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        hidden, labels = batch[:, : self.dim].to(self.head.weight.dtype), batch[:, self.dim].long()
        for linear in self.layers:
            hidden = F.relu(normalize(linear(hidden)))
        return F.cross_entropy(self.temperature * normalize(self.head(hidden)), labels)
