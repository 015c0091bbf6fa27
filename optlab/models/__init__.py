"""Models. Each is an nn.Module whose `forward(windows)` returns the mean cross-entropy loss of a batch
of token windows [batch, window_length], and which exposes `token_embedding` (the nn.Embedding whose
rows the embedding probes watch) and `window_length` (tokens per training example)."""

from __future__ import annotations

from torch import nn

from optlab.config import ModelConfig


def build_model(config: ModelConfig, vocab_size: int) -> nn.Module:
    if config.name == "bag":
        from optlab.models.bag import BagOfEmbeddings

        return BagOfEmbeddings(config, vocab_size)
    from optlab.models.gpt import GPT

    return GPT(config, vocab_size)
