"""A small causal Transformer language model in the spirit of nanoGPT (pre-LayerNorm, GELU MLP)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from optlab.models.heads import OutputHead, vocabulary_size


class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(x).split(width, dim=2)
        q, k, v = (t.view(batch, length, self.n_head, width // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(batch, length, width))


class Block(nn.Module):
    def __init__(self, width: int, n_head: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attention = CausalSelfAttention(width, n_head)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class GPT(nn.Module):
    def __init__(self, dataset, embedding_dim: int = 64, context: int = 64, n_layer: int = 2, n_head: int = 2,
                 tie_embeddings: str = "none", init_std: float = 0.02):
        super().__init__()
        self.window_length = context + 1
        self.token_embedding = nn.Embedding(vocabulary_size(dataset, "gpt"), embedding_dim)
        self.position_embedding = nn.Embedding(context, embedding_dim)
        self.blocks = nn.ModuleList(Block(embedding_dim, n_head) for _ in range(n_layer))
        self.norm = nn.LayerNorm(embedding_dim)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=init_std)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
        self.head = OutputHead(self.token_embedding, tie_embeddings, init_std)

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """Next-token logits (batch, length, vocabulary) for token ids (batch, length ≤ context)."""
        positions = torch.arange(inputs.shape[1], device=inputs.device)
        x = self.token_embedding(inputs) + self.position_embedding(positions)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        inputs, targets = windows[:, :-1], windows[:, 1:]
        return F.cross_entropy(self.logits(inputs).flatten(0, 1), targets.flatten())
