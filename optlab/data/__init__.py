"""Datasets. Each draws batches of examples with its own seeded generators (their states are the data
position a checkpoint stores): `sample(batch_size, length, split)` returns a tensor [batch_size, length].

Token datasets (zipf, stdlib-text) return windows of token ids and know `vocab_size` and `token_rank`
(1-based expected-frequency rank of each id; ids are assigned by rank, so `token_rank[i] = i + 1`), so
that probes can bucket tokens. The regression dataset returns rows [x, y] and has `teacher`.
"""

from __future__ import annotations

import torch

from optlab.config import DataConfig


class Dataset:
    """Shared machinery: one seeded generator per split, checkpointable. The `probe` split draws from the
    training distribution with its own generator: measurement probes use it, so that measuring never
    changes the examples a run trains on."""

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
    vocab_size: int

    @property
    def token_rank(self) -> torch.Tensor:
        return torch.arange(1, self.vocab_size + 1)


def build_dataset(config: DataConfig, seed: int) -> Dataset:
    if config.name == "gaussian-noise":
        from optlab.data.noise import GaussianNoise

        return GaussianNoise(config, seed)
    if config.name == "linear-regression":
        from optlab.data.regression import GaussianRegression

        return GaussianRegression(config, seed)
    if config.name == "teacher-classification":
        from optlab.data.teacher import TeacherClassification

        return TeacherClassification(config, seed)
    if config.name == "zipf":
        from optlab.data.zipf import ZipfTokens

        return ZipfTokens(config, seed)
    from optlab.data.stdlib_text import StdlibText

    return StdlibText(config, seed)
