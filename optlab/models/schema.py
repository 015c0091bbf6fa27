"""The YAML schema of every built-in model (torch-free); fields map one-to-one onto the model's
constructor keywords, after its dataset: `Model(dataset, **keywords)`. A model of the user's own is
named by import path instead (`model: {name: "package.module:Class", ...}`, optlab/models/__init__.py
gives the protocol). Adding a built-in model: its module in optlab/models/, and its schema here, listed
in BUILTIN_MODELS."""

from __future__ import annotations

from typing import ClassVar, Literal, NamedTuple, Optional

from pydantic import Field, model_validator

from optlab.components import BuiltinComponent, PluginComponent, component_union
from optlab.fields import NonNegativeFloat, PositiveFloat, PositiveInt


class Footprint(NamedTuple):
    """What the memory estimate (optlab/memory.py) needs to know of a model on its data: parameter
    count, numbers one example keeps for the backward pass (activations, logits), numbers held whatever
    the batch (a per-replica gradient), and the numbers of one example as the data draws it."""

    parameters: int
    per_example: int
    fixed: int
    example_size: int


class ModelSpec(BuiltinComponent):
    """`scale_invariant`: the model's function is unchanged when any one weight matrix is multiplied by a
    positive number (every matrix is followed by a normalisation; docs/science/other-effects.md §3.2)."""

    group: ClassVar[str] = "optlab.models"
    scale_invariant: ClassVar[bool] = False

    def footprint(self, data) -> Footprint | None:
        """The model's sizes on `data` (a dataset schema); None where the pair is not this model's."""
        return None


class LanguageModelSpec(ModelSpec):
    """Fields every language model shares. `tie_embeddings`: none (separate head), plain (logits = h·Eᵀ)
    or swap (logits = swap(h)·Eᵀ with the two halves of h's channels exchanged; docs/science/embedding-drift.md §5b)."""

    embedding_dim: PositiveInt = 32
    context: PositiveInt = 4
    tie_embeddings: Literal["none", "plain", "swap"] = "none"
    init_std: PositiveFloat = 0.02

    @model_validator(mode="after")
    def _swap_needs_even_width(self):
        if self.tie_embeddings == "swap" and self.embedding_dim % 2:
            raise ValueError(f"tie_embeddings: swap needs an even embedding_dim (got {self.embedding_dim})")
        return self


class BagModelSpec(LanguageModelSpec):
    """Bag-of-embeddings next-token predictor: mean of the previous `context` embeddings -> LayerNorm -> head."""

    component: ClassVar[str] = "optlab.models.bag:BagOfEmbeddings"
    name: Literal["bag"] = "bag"
    norm_affine: bool = True

    def footprint(self, data) -> Footprint | None:
        vocabulary, width = data.vocabulary(), self.embedding_dim
        if vocabulary is None:
            return None
        head = vocabulary * (width if self.tie_embeddings == "none" else 0) + vocabulary
        return Footprint(vocabulary * width + 2 * width + head, self.context * width + 4 * width + 3 * vocabulary,
                         0, self.context + 1)


class GPTModelSpec(LanguageModelSpec):
    """Small causal Transformer language model (pre-LayerNorm, GELU MLP, learned positions)."""

    component: ClassVar[str] = "optlab.models.gpt:GPT"
    name: Literal["gpt"] = "gpt"
    embedding_dim: PositiveInt = 64
    context: PositiveInt = 64
    n_layer: PositiveInt = 2
    n_head: PositiveInt = 2

    @model_validator(mode="after")
    def _heads_divide_width(self):
        if self.embedding_dim % self.n_head:
            raise ValueError(f"embedding_dim ({self.embedding_dim}) must be divisible by n_head ({self.n_head})")
        return self

    def footprint(self, data) -> Footprint | None:
        vocabulary, width, context, layers = data.vocabulary(), self.embedding_dim, self.context, self.n_layer
        if vocabulary is None:
            return None
        head = vocabulary * (width if self.tie_embeddings == "none" else 0) + vocabulary
        parameters = (vocabulary + context) * width + layers * (12 * width * width + 13 * width) + 2 * width + head
        # per layer: LayerNorms, q k v, attention output, the 4× MLP (≈ 20 widths a position), and the
        # attention weights of every head; then the logits, their softmax and its gradient
        per_example = layers * (20 * context * width + 3 * self.n_head * context * context) + 3 * context * vocabulary
        return Footprint(parameters, per_example, 0, context + 1)


class LinearRegressionSpec(ModelSpec):
    """Linear student w ∈ R^d for the linear-regression data, started at w* + e_0: `start: sphere` puts
    e_0 at distance `init_distance` in a random direction; `start: gaussian` draws e_0 ~ N(0, init_distance²·I)
    (docs/science/scaling-laws.md §2, Exp D0). `start_seed` fixes the draw for every training seed, from
    NumPy's default_rng(start_seed), as the reference numbers of Exp D0 were (default: torch's generator, seeded by the training seed)."""

    component: ClassVar[str] = "optlab.models.linreg:LinearRegression"
    name: Literal["linreg"] = "linreg"
    init_distance: PositiveFloat = 1.0
    start: Literal["sphere", "gaussian"] = "sphere"
    start_seed: Optional[int] = None

    def footprint(self, data) -> Footprint | None:
        dim = getattr(data, "dim", None)
        return Footprint(dim, 3 * dim, 0, dim + 1) if isinstance(dim, int) else None


class NoisyQuadraticSpec(ModelSpec):
    """Noisy quadratic model (docs/science/scaling-laws.md §2, Exp B): L(e) = ½ eᵀHe with H = (1 − ρ)I + ρ·11ᵀ
    over `replicas` independent copies, started at e_0 = c·1 where the gradient is g_0·1; the gradient of
    each copy is g + (σ/√B)·z with the noise drawn by the gaussian-noise data."""

    component: ClassVar[str] = "optlab.models.nqm:NoisyQuadratic"
    name: Literal["nqm"] = "nqm"
    correlation: float = Field(0.0, ge=0, lt=1)
    gradient_scale: PositiveFloat = 1.0
    noise_std: NonNegativeFloat = 1000**0.5

    def footprint(self, data) -> Footprint | None:
        dim, replicas = getattr(data, "dim", None), getattr(data, "replicas", None)
        if not (isinstance(dim, int) and isinstance(replicas, int)):
            return None
        return Footprint(replicas * dim, 0, 4 * replicas * dim, 0)  # the batch is one noise draw per replica


class DiagonalQuadraticSpec(ModelSpec):
    """L(θ) = ½ Σ h_i θ_i² with h log-spaced over `curvature_range` (θ* = 0; docs/science/other-effects.md
    §2), started at |θ_0| = `init_distance` along 1. Noise from the gaussian-noise data (z ~ N(0, I), 2
    replicas): `point_noise` σ takes the gradient at θ + σz_1 (regime A: with θ_0 = θ* and a negligible lr,
    θ − θ* ~ N(0, σ²I)); `gradient_noise` s adds s·z_2 to the gradient (regime D); `relative_noise` ν adds
    ν·‖Hθ‖/√d·z_2, noise proportional to the gradient (a constant convergence rate for sign updates, §3.4)."""

    component: ClassVar[str] = "optlab.models.quadratic:DiagonalQuadratic"
    name: Literal["quadratic"] = "quadratic"
    curvature_range: tuple[PositiveFloat, PositiveFloat] = (1e-2, 10.0)
    init_distance: NonNegativeFloat = 1.0
    point_noise: NonNegativeFloat = 0.0
    gradient_noise: NonNegativeFloat = 0.0
    relative_noise: NonNegativeFloat = 0.0

    def footprint(self, data) -> Footprint | None:
        dim = getattr(data, "dim", None)
        return Footprint(dim, 0, 6 * dim, 0) if isinstance(dim, int) else None


class MLPClassifierSpec(ModelSpec):
    """Student MLP for the teacher–student data: dim → width → classes, ReLU, PyTorch's default init."""

    component: ClassVar[str] = "optlab.models.mlp:MLPClassifier"
    name: Literal["mlp"] = "mlp"
    width: PositiveInt = 64

    def footprint(self, data) -> Footprint | None:
        dim, classes = getattr(data, "dim", None), getattr(data, "classes", None)
        if not (isinstance(dim, int) and isinstance(classes, int)):
            return None
        return Footprint((dim + 1) * self.width + (self.width + 1) * classes, dim + 3 * self.width + 3 * classes, 0,
                         dim + 1)


class NormalizedMLPSpec(ModelSpec):
    """Teacher–student classifier with every matrix followed by an RMS normalisation (no gain, no ε, no
    biases): dim → width (× depth) → classes, logits = temperature·n(W_head h); its function does not depend
    on the scale of any matrix. Matrices start N(0, (init_scale/√fan_in)²)."""

    component: ClassVar[str] = "optlab.models.normalized_mlp:NormalizedMLP"
    name: Literal["normalized-mlp"] = "normalized-mlp"
    scale_invariant: ClassVar[bool] = True
    width: PositiveInt = 64
    depth: PositiveInt = 2
    temperature: PositiveFloat = 2.0
    init_scale: PositiveFloat = 1.0

    def footprint(self, data) -> Footprint | None:
        dim, classes = getattr(data, "dim", None), getattr(data, "classes", None)
        if not (isinstance(dim, int) and isinstance(classes, int)):
            return None
        width, depth = self.width, self.depth
        return Footprint(dim * width + (depth - 1) * width * width + width * classes,
                         dim + 4 * depth * width + 3 * classes, 0, dim + 1)


class PluginModelSpec(PluginComponent):
    """Any nn.Module class, or a factory(dataset, **keywords) returning one, by import path or entry point
    (`optlab.models`); the protocol is in optlab/models/__init__.py."""

    group: ClassVar[str] = "optlab.models"
    leading: ClassVar[int] = 1  # dataset

    @classmethod
    def check_target(cls, target) -> str | None:
        import inspect

        from torch import nn

        if inspect.isclass(target) and not issubclass(target, nn.Module):
            return "is not an nn.Module subclass (nor a factory function returning one)"
        return PluginComponent.check_target(target)

    def footprint(self, data) -> Footprint | None:
        return None  # a model of the user's own: its sizes are not known before it is built


BUILTIN_MODELS = (BagModelSpec, GPTModelSpec, LinearRegressionSpec, NoisyQuadraticSpec, DiagonalQuadraticSpec,
                  MLPClassifierSpec, NormalizedMLPSpec)
ModelConfig = component_union(BUILTIN_MODELS, PluginModelSpec)
