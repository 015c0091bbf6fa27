"""Output projection to the vocabulary: separate, tied to the input embedding, or tied with half-swap.

Tied embeddings are fix (b) of docs/science/embedding-drift.md §5: the softmax gives every row of E a dense gradient
each step, so no row's momentum goes stale. Su's half-channel swap: logits = swap(h)·Eᵀ with
swap(h) = concat(h[d/2:], h[:d/2]).
"""

from __future__ import annotations

import torch
from torch import nn

from optlab.errors import ConfigError


def vocabulary_size(dataset, model: str) -> int:
    """The vocabulary a language model embeds: its dataset's `vocab_size` (token datasets only)."""
    if not isinstance(getattr(dataset, "vocab_size", None), int):
        raise ConfigError(f"model.name: {model} is a language model; data.name must be a token dataset "
                          "(zipf, stdlib-text, or one with a `vocab_size`)")
    return dataset.vocab_size


class OutputHead(nn.Module):
    def __init__(self, embedding: nn.Embedding, tie: str, init_std: float):
        super().__init__()
        vocab_size, width = embedding.weight.shape
        self.tie = tie
        self.embedding = embedding if tie != "none" else None
        self.weight = nn.Parameter(torch.randn(vocab_size, width) * init_std) if tie == "none" else None
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.tie == "none":
            return hidden @ self.weight.t() + self.bias
        if self.tie == "swap":
            half = hidden.shape[-1] // 2
            hidden = torch.cat([hidden[..., half:], hidden[..., :half]], dim=-1)
        return hidden @ self.embedding.weight.t() + self.bias
