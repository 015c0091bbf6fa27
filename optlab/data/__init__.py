"""Datasets: each yields windows of token ids and knows every token's frequency rank.

A dataset object has `vocab_size`, `token_rank` (1-based expected-frequency rank of each token id; ids
are assigned by rank, so `token_rank[i] = i + 1`), and `sample(batch_size, length, split)` returning a
LongTensor [batch_size, length] drawn with the dataset's own seeded generator. The generator states
are the data position a checkpoint stores.
"""

from __future__ import annotations

import torch

from optlab.config import DataConfig


class TokenDataset:
    """Shared machinery: one seeded generator per split, checkpointable."""

    vocab_size: int
    splits = ("train", "val")

    def __init__(self, seed: int):
        self.generators = {}
        for offset, split in enumerate(self.splits):
            self.generators[split] = torch.Generator().manual_seed(seed * 1_000_003 + offset)

    @property
    def token_rank(self) -> torch.Tensor:
        return torch.arange(1, self.vocab_size + 1)

    def sample(self, batch_size: int, length: int, split: str = "train") -> torch.Tensor:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {split: generator.get_state() for split, generator in self.generators.items()}

    def load_state_dict(self, state: dict) -> None:
        for split, generator_state in state.items():
            self.generators[split].set_state(generator_state)


def build_dataset(config: DataConfig, seed: int) -> TokenDataset:
    if config.name == "zipf":
        from optlab.data.zipf import ZipfTokens

        return ZipfTokens(config, seed)
    from optlab.data.stdlib_text import StdlibText

    return StdlibText(config, seed)
