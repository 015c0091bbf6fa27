"""Models, one module each; their YAML schemas in schema.py.

The model protocol (built-in models and those named by import path alike):

    factory(dataset, **keywords) -> nn.Module, with
        forward(batch) -> the mean loss of the batch (a 0-dim tensor)
        window_length: int    values per example the dataset is asked for (`dataset.sample(B, window_length)`)
    optional members, which the probes read through `capabilities(model)`:
        token_embedding       the nn.Embedding whose rows the embedding-drift probes watch
        exact_metrics()       {name: float} the model knows exactly (population loss, exact noise scales),
                              logged at θ_0 and at every probe step
        hessian_diagonal      the loss Hessian's diagonal where it is known (Adam-curvature probe)
        logits(inputs)        next-token logits (batch, length, vocabulary) of a language model (`optlab sample`)

A model sizes itself from its dataset (e.g. `dataset.vocab_size`) and says in one line, as a
ConfigError, when it is given a dataset it cannot use. This module stays torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from optlab.errors import ConfigError


@dataclass(frozen=True)
class ModelCapabilities:
    """What a model offers beyond forward(batch) -> loss."""

    token_embedding: Optional[Any] = None  # nn.Embedding
    exact_metrics: Optional[Callable[[], dict]] = None
    hessian_diagonal: Optional[Any] = None  # Tensor
    logits: Optional[Callable[[Any], Any]] = None  # token ids (B, T) -> logits (B, T, V)


def capabilities(model) -> ModelCapabilities:
    """The optional protocol members a model defines (the one place that looks for them)."""
    return ModelCapabilities(token_embedding=getattr(model, "token_embedding", None),
                             exact_metrics=getattr(model, "exact_metrics", None),
                             hessian_diagonal=getattr(model, "hessian_diagonal", None),
                             logits=getattr(model, "logits", None))


def build_model(spec, dataset):
    """The model of a `model:` section (a built-in schema or an import path), sized by its dataset."""
    try:
        model = spec.factory()(dataset, **spec.keywords())
    except (TypeError, ValueError) as error:
        raise ConfigError(f"model: {spec.name} cannot be built ({type(error).__name__}: {error})") from None
    if not isinstance(getattr(model, "window_length", None), int):
        raise ConfigError(f"model: {spec.name} does not say how long an example is: give it an int `window_length`")
    return model
