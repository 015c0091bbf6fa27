"""Synthetic Zipfian token stream (docs/science/embedding-drift.md §6): p(rank r) ∝ r^-s, token id = r - 1.

Learnable structure: with probability `bigram_prob` a token is one of `bigram_branching` fixed random
successors of the previous token (drawn once from the same Zipf law, so expected unigram frequencies
stay Zipfian); otherwise it is a fresh Zipf draw. `bigram_prob = 0` gives i.i.d. tokens.
"""

from __future__ import annotations

import torch

from optlab.data.dataset import TokenDataset


def zipf_probabilities(vocab_size: int, exponent: float) -> torch.Tensor:
    ranks = torch.arange(1, vocab_size + 1, dtype=torch.float64)
    weights = ranks.pow(-exponent)
    return (weights / weights.sum()).float()


class ZipfTokens(TokenDataset):
    def __init__(self, seed: int, vocab_size: int = 10_000, exponent: float = 1.2, bigram_prob: float = 0.5,
                 bigram_branching: int = 4):
        super().__init__(seed)
        self.vocab_size, self.bigram_prob, self.bigram_branching = vocab_size, bigram_prob, bigram_branching
        self.probabilities = zipf_probabilities(vocab_size, exponent)
        structure = torch.Generator().manual_seed(seed + 7919)
        self.successors = self._draw(vocab_size * bigram_branching, structure).view(vocab_size, bigram_branching)

    def _draw(self, count: int, generator: torch.Generator) -> torch.Tensor:
        return torch.multinomial(self.probabilities, count, replacement=True, generator=generator)

    def sample(self, batch_size: int, length: int, split: str = "train") -> torch.Tensor:
        generator = self.generators[split]
        tokens = self._draw(batch_size * length, generator).view(batch_size, length)
        if self.bigram_prob == 0:
            return tokens
        follows = torch.rand(batch_size, length, generator=generator) < self.bigram_prob
        branch = torch.randint(self.bigram_branching, (batch_size, length), generator=generator)
        for position in range(1, length):  # a Markov chain along each window, vectorised over the batch
            successor = self.successors[tokens[:, position - 1], branch[:, position]]
            tokens[:, position] = torch.where(follows[:, position], successor, tokens[:, position])
        return tokens
