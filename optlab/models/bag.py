"""Bag-of-embeddings next-token predictor (docs/science/embedding-drift.md §6).

previous `context` token ids -> E (V×d) -> mean of the rows -> LayerNorm -> head (d -> V) -> softmax.
The LayerNorm has learned gain and bias unless `norm_affine: false`.
Only the rows of the tokens in the batch get a gradient through the input, so rare rows see long runs
of exactly-zero gradient: the setting of the ±1/λ drift.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from optlab.models.heads import OutputHead, vocabulary_size


class BagOfEmbeddings(nn.Module):
    def __init__(self, dataset, embedding_dim: int = 32, context: int = 4, tie_embeddings: str = "none",
                 init_std: float = 0.02, norm_affine: bool = True):
        super().__init__()
        self.context = context
        self.window_length = context + 1
        self.token_embedding = nn.Embedding(vocabulary_size(dataset, "bag"), embedding_dim)
        nn.init.normal_(self.token_embedding.weight, std=init_std)
        self.norm = nn.LayerNorm(embedding_dim, elementwise_affine=norm_affine)
        self.head = OutputHead(self.token_embedding, tie_embeddings, init_std)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        inputs, targets = windows[:, : self.context], windows[:, self.context]
        hidden = self.norm(self.token_embedding(inputs).mean(dim=1))
        return F.cross_entropy(self.head(hidden), targets)
