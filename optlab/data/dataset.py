"""The convenience base of optlab's datasets: one seeded generator per split, checkpointable.

Any object with `sample` and `state_dict`/`load_state_dict` is a dataset (the protocol is in
optlab/data/__init__.py); deriving from `Dataset` gives the seeded splits for free.
"""

from __future__ import annotations

import torch


class Dataset:
    """One seeded generator per split; their states are the data position a checkpoint stores. The
    `probe` split draws from the training distribution with its own generator: measurement probes use
    it, so that measuring never changes the examples a run trains on."""

    splits = ("train", "val", "probe")

    def __init__(self, seed: int):
        self.generators = {}
        for offset, split in enumerate(self.splits):
            self.generators[split] = torch.Generator().manual_seed(seed * 1_000_003 + offset)

    def sample(self, batch_size: int, length: int, split: str = "train") -> torch.Tensor:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {split: generator.get_state() for split, generator in self.generators.items()}

    def load_state_dict(self, state: dict) -> None:
        for split, generator_state in state.items():
            self.generators[split].set_state(generator_state)


class TokenDataset(Dataset):
    """Token ids assigned by expected-frequency rank (id 0 = most frequent), so `token_rank[i] = i + 1`."""

    vocab_size: int

    @property
    def token_rank(self) -> torch.Tensor:
        return torch.arange(1, self.vocab_size + 1)
