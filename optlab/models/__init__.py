"""Models. Each is an nn.Module whose `forward(batch)` returns the mean loss of a batch [batch,
window_length] drawn from its dataset, and which exposes `window_length` (values per example).
Language models also expose `token_embedding` (the nn.Embedding whose rows the embedding probes
watch); a model may offer `extra_metrics()` (e.g. an exact population loss), logged at probe steps."""

from __future__ import annotations

from torch import nn

from optlab.config import ModelConfig
from optlab.errors import OptlabError


def build_model(config: ModelConfig, dataset) -> nn.Module:
    """The model for `config`, sized by its dataset (vocabulary, or the regression teacher)."""
    if config.name == "nqm":
        from optlab.models.nqm import NoisyQuadratic

        if not hasattr(dataset, "replicas"):
            raise OptlabError("model.name: nqm needs data.name: gaussian-noise")
        return NoisyQuadratic(config, dataset.dim, dataset.replicas)
    if config.name == "linreg":
        from optlab.models.linreg import LinearRegression

        if not hasattr(dataset, "teacher"):
            raise OptlabError("model.name: linreg needs data.name: linear-regression")
        return LinearRegression(config, dataset.teacher, dataset.label_noise, dataset.curvature)
    if config.name == "mlp":
        from optlab.models.mlp import MLPClassifier

        if not hasattr(dataset, "classes"):
            raise OptlabError("model.name: mlp needs data.name: teacher-classification")
        return MLPClassifier(config, dataset.dim, dataset.classes)
    if config.name == "quadratic":
        from optlab.models.quadratic import DiagonalQuadratic

        if getattr(dataset, "replicas", 0) < 2:
            raise OptlabError("model.name: quadratic needs data.name: gaussian-noise with replicas: 2 (one draw for "
                              "the point noise, one for the gradient noise)")
        return DiagonalQuadratic(config, dataset.dim)
    if not hasattr(dataset, "vocab_size"):
        raise OptlabError(f"model.name: {config.name} is a language model; data.name must be a token dataset (zipf, stdlib-text)")
    if config.name == "bag":
        from optlab.models.bag import BagOfEmbeddings

        return BagOfEmbeddings(config, dataset.vocab_size)
    from optlab.models.gpt import GPT

    return GPT(config, dataset.vocab_size)
