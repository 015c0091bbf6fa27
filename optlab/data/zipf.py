"""Synthetic Zipfian token stream (embedding-drift.md §6): p(rank r) ∝ r^-s, token id = r - 1.

Learnable structure: with probability `bigram_prob` a token is one of `bigram_branching` fixed random
successors of the previous token (drawn once from the same Zipf law, so expected unigram frequencies
stay Zipfian); otherwise it is a fresh Zipf draw. `bigram_prob = 0` gives i.i.d. tokens.
"""

from __future__ import annotations

import torch

from optlab.config import ZipfDataConfig
from optlab.data import TokenDataset


def zipf_probabilities(vocab_size: int, exponent: float) -> torch.Tensor:
    ranks = torch.arange(1, vocab_size + 1, dtype=torch.float64)
    weights = ranks.pow(-exponent)
    return (weights / weights.sum()).float()


class ZipfTokens(TokenDataset):
    def __init__(self, config: ZipfDataConfig, seed: int):
        super().__init__(seed)
        self.config = config
        self.vocab_size = config.vocab_size
        self.probabilities = zipf_probabilities(config.vocab_size, config.exponent)
        structure = torch.Generator().manual_seed(seed + 7919)
        self.successors = self._draw(config.vocab_size * config.bigram_branching, structure).view(
            config.vocab_size, config.bigram_branching
        )

    def _draw(self, count: int, generator: torch.Generator) -> torch.Tensor:
        return torch.multinomial(self.probabilities, count, replacement=True, generator=generator)

    def sample(self, batch_size: int, length: int, split: str = "train") -> torch.Tensor:
        generator = self.generators[split]
        tokens = self._draw(batch_size * length, generator).view(batch_size, length)
        if self.config.bigram_prob == 0:
            return tokens
        follows = torch.rand(batch_size, length, generator=generator) < self.config.bigram_prob
        branch = torch.randint(self.config.bigram_branching, (batch_size, length), generator=generator)
        for position in range(1, length):  # a Markov chain along each window, vectorised over the batch
            successor = self.successors[tokens[:, position - 1], branch[:, position]]
            tokens[:, position] = torch.where(follows[:, position], successor, tokens[:, position])
        return tokens
