"""Datasets, one module each; their YAML schemas in schema.py.

The dataset protocol (built-in datasets and those named by import path alike):

    factory(seed, **keywords) -> dataset, with
        sample(batch_size, length, split="train") -> Tensor [batch_size, length]
            a batch of examples; `length` is the model's `window_length` (token windows, regression
            rows [x, y], noise draws); `split` is "train", "val" (held out: eval_loss) or "probe" (the
            training distribution with its own generator, for measurements)
        state_dict() / load_state_dict(state)   the data position, stored in checkpoints
    optional, read by probes and models:
        vocab_size                      token datasets: the vocabulary a language model embeds
        token_rank                      1-based frequency rank of each token id (embedding drift buckets)

optlab.data.dataset.Dataset gives the seeded, checkpointable splits to derive from. This module stays
torch-free; the dataset modules import torch.
"""

from __future__ import annotations

from optlab.errors import ConfigError


def build_dataset(spec, seed: int):
    """The dataset of a `data:` section (a built-in schema or an import path), seeded by `seed`."""
    try:
        return spec.factory()(seed, **spec.keywords())
    except (TypeError, ValueError) as error:
        raise ConfigError(f"data: {spec.name} cannot be built ({type(error).__name__}: {error})") from None
