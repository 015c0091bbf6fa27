"""Teacher–student classification (docs/science/scaling-laws.md §2, Exp D).

x ~ N(0, I_d); the teacher is a fixed random MLP d → w → c with tanh, weights N(0, 1/fan_in) and no
biases; a label is drawn from softmax(scale · teacher(x)), so the task has irreducible noise (the
teacher's entropy) and a finite gradient noise scale. A batch is a float tensor [B, d + 1]: the
inputs, then the label. `teacher_entropy` is the Monte-Carlo mean entropy of the label, the floor of
the student's cross-entropy.
"""

from __future__ import annotations

import torch

from optlab.data.dataset import Dataset


class TeacherClassification(Dataset):
    def __init__(self, seed: int, dim: int = 16, classes: int = 4, teacher_width: int = 32, logit_scale: float = 2.0,
                 teacher_seed: int = 0):
        super().__init__(seed)
        self.dim, self.classes, self.logit_scale = dim, classes, logit_scale
        generator = torch.Generator().manual_seed(teacher_seed)
        self.hidden = torch.randn(dim, teacher_width, generator=generator) / dim**0.5
        self.output = torch.randn(teacher_width, classes, generator=generator) / teacher_width**0.5
        probe = torch.randn(65_536, dim, generator=generator)
        self.teacher_entropy = torch.distributions.Categorical(logits=self.teacher_logits(probe)).entropy().mean().item()

    def teacher_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.logit_scale * torch.tanh(inputs @ self.hidden) @ self.output

    def sample(self, batch_size: int, length: int, split: str = "train") -> torch.Tensor:
        generator = self.generators[split]
        inputs = torch.randn(batch_size, self.dim, generator=generator)
        probabilities = torch.softmax(self.teacher_logits(inputs), dim=-1)
        labels = torch.multinomial(probabilities, 1, generator=generator)
        return torch.cat([inputs, labels.float()], dim=1)
