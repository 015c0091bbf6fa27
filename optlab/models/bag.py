"""Bag-of-embeddings next-token predictor (embedding-drift.md §6).

previous `context` token ids -> E (V×d) -> mean of the rows -> LayerNorm -> head (d -> V) -> softmax.
The LayerNorm has learned gain and bias unless `norm_affine: false`.
Only the rows of the tokens in the batch get a gradient through the input, so rare rows see long runs
of exactly-zero gradient: the setting of the ±1/λ drift.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from optlab.config import BagModelConfig
from optlab.models.heads import OutputHead


class BagOfEmbeddings(nn.Module):
    def __init__(self, config: BagModelConfig, vocab_size: int):
        super().__init__()
        self.context = config.context
        self.window_length = config.context + 1
        self.token_embedding = nn.Embedding(vocab_size, config.embedding_dim)
        nn.init.normal_(self.token_embedding.weight, std=config.init_std)
        self.norm = nn.LayerNorm(config.embedding_dim, elementwise_affine=config.norm_affine)
        self.head = OutputHead(self.token_embedding, config.tie_embeddings, config.init_std)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        inputs, targets = windows[:, : self.context], windows[:, self.context]
        hidden = self.norm(self.token_embedding(inputs).mean(dim=1))
        return F.cross_entropy(self.head(hidden), targets)
