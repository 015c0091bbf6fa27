"""Experiment configuration: a validated schema, safe YAML loading and `key.sub=value` overrides.

This module must not import torch: `optlab validate` and `optlab --help` stay fast.

A config file has the sections model, data, optimizer, param_groups, schedule, training, probes,
output and (optionally) effect. Every section has defaults that work; unknown keys are errors.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from optlab.errors import ConfigError

PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Beta = Annotated[float, Field(ge=0, lt=1)]
Fraction = Annotated[float, Field(ge=0, le=1)]

PARAMETER_KINDS = ("embedding", "head", "matrix", "bias", "norm")
ParameterKind = Literal["embedding", "head", "matrix", "bias", "norm"]


class Strict(BaseModel):
    """Base of every section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ----------------------------------------------------------------------------------------- model


class LanguageModelBase(Strict):
    """Fields every model shares. `tie_embeddings`: none (separate head), plain (logits = h·Eᵀ) or
    swap (logits = swap(h)·Eᵀ with the two halves of h's channels exchanged; embedding-drift.md §5b)."""

    embedding_dim: PositiveInt = 32
    context: PositiveInt = 4
    tie_embeddings: Literal["none", "plain", "swap"] = "none"
    init_std: PositiveFloat = 0.02

    @model_validator(mode="after")
    def _swap_needs_even_width(self):
        if self.tie_embeddings == "swap" and self.embedding_dim % 2:
            raise ValueError(f"tie_embeddings: swap needs an even embedding_dim (got {self.embedding_dim})")
        return self


class BagModelConfig(LanguageModelBase):
    """Bag-of-embeddings next-token predictor: mean of the previous `context` embeddings -> LayerNorm -> head."""

    name: Literal["bag"] = "bag"
    norm_affine: bool = True


class GPTModelConfig(LanguageModelBase):
    """Small causal Transformer language model (pre-LayerNorm, GELU MLP, learned positions)."""

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


class LinearRegressionConfig(Strict):
    """Linear student w ∈ R^d for the linear-regression data, started at w* + e_0: `start: sphere` puts
    e_0 at distance `init_distance` in a random direction; `start: gaussian` draws e_0 ~ N(0, init_distance²·I)
    (scaling-laws.md Exp D0). `start_seed` fixes the draw for every training seed, from NumPy's
    default_rng(start_seed) as in the spec (default: torch's generator, seeded by the training seed)."""

    name: Literal["linreg"] = "linreg"
    init_distance: PositiveFloat = 1.0
    start: Literal["sphere", "gaussian"] = "sphere"
    start_seed: Optional[int] = None


class NoisyQuadraticConfig(Strict):
    """Noisy quadratic model (scaling-laws.md Exp B): L(e) = ½ eᵀHe with H = (1 − ρ)I + ρ·11ᵀ over
    `replicas` independent copies, started at e_0 = c·1 where the gradient is g_0·1; the gradient of
    each copy is g + (σ/√B)·z with the noise drawn by the gaussian-noise data."""

    name: Literal["nqm"] = "nqm"
    correlation: Annotated[float, Field(ge=0, lt=1)] = 0.0
    gradient_scale: PositiveFloat = 1.0
    noise_std: NonNegativeFloat = 1000**0.5


class DiagonalQuadraticConfig(Strict):
    """L(θ) = ½ Σ h_i θ_i² with h log-spaced over `curvature_range` (θ* = 0; other-effects.md §2), started
    at |θ_0| = `init_distance` along 1. Noise from the gaussian-noise data (z ~ N(0, I), 2 replicas):
    `point_noise` σ takes the gradient at θ + σz_1 (regime A: with θ_0 = θ* and a negligible lr,
    θ − θ* ~ N(0, σ²I)); `gradient_noise` s adds s·z_2 to the gradient (regime D)."""

    name: Literal["quadratic"] = "quadratic"
    curvature_range: tuple[PositiveFloat, PositiveFloat] = (1e-2, 10.0)
    init_distance: NonNegativeFloat = 1.0
    point_noise: NonNegativeFloat = 0.0
    gradient_noise: NonNegativeFloat = 0.0


class MLPClassifierConfig(Strict):
    """Student MLP for the teacher–student data: dim → width → classes, ReLU, PyTorch's default init."""

    name: Literal["mlp"] = "mlp"
    width: PositiveInt = 64


ModelConfig = Annotated[Union[BagModelConfig, GPTModelConfig, LinearRegressionConfig, NoisyQuadraticConfig,
                              DiagonalQuadraticConfig, MLPClassifierConfig],
                        Field(discriminator="name")]

# ------------------------------------------------------------------------------------------ data


class ZipfDataConfig(Strict):
    """Synthetic tokens with Zipfian unigram frequencies p(r) ∝ r^-exponent (token id = rank - 1).

    With probability `bigram_prob` a token follows its predecessor through a fixed random sparse
    bigram table (`bigram_branching` successors per token, themselves drawn from the Zipf law, so the
    expected unigram frequencies stay Zipfian); otherwise it is drawn afresh.
    """

    name: Literal["zipf"] = "zipf"
    vocab_size: Annotated[int, Field(ge=2)] = 10_000
    exponent: PositiveFloat = 1.2
    bigram_prob: Fraction = 0.5
    bigram_branching: PositiveInt = 4


class StdlibTextDataConfig(Strict):
    """English text of Python's own documentation (`pydoc_data.topics`), words (top-K + <unk>) or bytes."""

    name: Literal["stdlib-text"] = "stdlib-text"
    tokenizer: Literal["words", "bytes"] = "words"
    vocab_size: Annotated[int, Field(ge=2)] = 4096
    val_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.1


class RegressionDataConfig(Strict):
    """x ~ N(0, H), y = xᵀw* + label_noise·ε, w* ~ N(0, I) fixed by the seed, or w* = 0 (`teacher:
    zero`). SGD's error e = w − w* evolves independently of w*, so w* = 0 loses nothing and removes the
    round-off floor |w*|·ε that caps how small |e| can get (scaling-laws.md Exp A).
    The input covariance H = diag(h) is the loss Hessian: `spectrum` isotropic (h = 1), log-spaced (h
    log-spaced over `spectrum_range`, other-effects.md §2) or harmonic (h_i = 1/i, scaling-laws.md Exp D0)."""

    name: Literal["linear-regression"] = "linear-regression"
    dim: PositiveInt = 63
    label_noise: NonNegativeFloat = 0.0
    teacher: Literal["gaussian", "zero"] = "gaussian"
    spectrum: Literal["isotropic", "log-spaced", "harmonic"] = "isotropic"
    spectrum_range: tuple[PositiveFloat, PositiveFloat] = (1e-2, 10.0)


class TeacherClassificationDataConfig(Strict):
    """Teacher–student classification (scaling-laws.md Exp D): x ~ N(0, I_dim) and a label drawn from
    softmax(logit_scale · teacher(x)), teacher a fixed random MLP dim → teacher_width → classes with tanh
    and weights N(0, 1/fan_in), fixed by `teacher_seed` for every training seed. Fresh samples each batch."""

    name: Literal["teacher-classification"] = "teacher-classification"
    dim: PositiveInt = 16
    classes: Annotated[int, Field(ge=2)] = 4
    teacher_width: PositiveInt = 32
    logit_scale: PositiveFloat = 2.0
    teacher_seed: int = 0


class GaussianNoiseDataConfig(Strict):
    """Standard normal draws z ∈ R^{replicas × dim} scaled by 1/sqrt(batch_size): the mean of B i.i.d.
    unit-variance per-example noises, drawn in one go (scaling-laws.md §6, noise injection)."""

    name: Literal["gaussian-noise"] = "gaussian-noise"
    dim: PositiveInt = 64
    replicas: PositiveInt = 4000


DataConfig = Annotated[Union[ZipfDataConfig, StdlibTextDataConfig, RegressionDataConfig, GaussianNoiseDataConfig,
                             TeacherClassificationDataConfig],
                       Field(discriminator="name")]

# ------------------------------------------------------------------------------------- optimizer


class OptimizerSpecBase(Strict):
    """Hyper-parameters of one optimizer; the fields map one-to-one onto its constructor."""

    def route(self, kind: str) -> "OptimizerSpecBase":
        """The spec that should update parameters of `kind` (Muon hands non-matrices to AdamW)."""
        return self


class AdamWSpec(OptimizerSpecBase):
    """torch.optim.AdamW: decoupled, lr-coupled decay; ε outside the square root (optimizers.md §4).
    `fused: true` uses torch's single-kernel implementation (CPU and CUDA); null keeps torch's default."""

    name: Literal["adamw"] = "adamw"
    lr: PositiveFloat = 1e-3
    betas: tuple[Beta, Beta] = (0.9, 0.999)
    eps: PositiveFloat = 1e-8
    weight_decay: NonNegativeFloat = 0.01
    fused: Optional[bool] = None


class AdamSpec(AdamWSpec):
    """torch.optim.Adam: weight decay is L2 added to the gradient; β = 0 and large ε allowed (scaling laws)."""

    name: Literal["adam"] = "adam"
    weight_decay: NonNegativeFloat = 0.0


class SGDSpec(OptimizerSpecBase):
    """torch.optim.SGD with (optionally Nesterov) momentum; weight decay is L2 added to the gradient."""

    name: Literal["sgd"] = "sgd"
    lr: PositiveFloat = 0.1
    momentum: Beta = 0.9
    nesterov: bool = False
    weight_decay: NonNegativeFloat = 0.0


class SignSGDSpec(OptimizerSpecBase):
    """SignSGD (arXiv 1802.04434): θ ← θ(1 − ηλ) − η·sign(g), optimizers.md §3."""

    name: Literal["signsgd"] = "signsgd"
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 0.0


class SignumSpec(OptimizerSpecBase):
    """Signum: sign of the momentum m ← βm + (1 − β)g, optimizers.md §3."""

    name: Literal["signum"] = "signum"
    lr: PositiveFloat = 1e-3
    beta: Beta = 0.9
    weight_decay: NonNegativeFloat = 0.0


class LionSpec(OptimizerSpecBase):
    """Lion (arXiv 2302.06675), optimizers.md §1."""

    name: Literal["lion"] = "lion"
    lr: PositiveFloat = 1e-4
    betas: tuple[Beta, Beta] = (0.9, 0.99)
    weight_decay: NonNegativeFloat = 0.0
    compiled: bool = False


class TigerSpec(OptimizerSpecBase):
    """Tiger (kexue.fm/archives/9512), optimizers.md §2.

    `parameter_scaling` switches the per-parameter rules of §2.3 (0.5× lr and no decay for biases and
    norm gains, ×RMS for matrices, ×per-row RMS for embeddings); off, Tiger is Lion with β1 = β2 = β.
    `absorb_accumulation` folds training.grad_accum_steps into the momentum (§2.4): no gradient buffer.
    `update_every: k` updates the momentum every step but moves the parameters only every k-th step (the
    lr × χ_{t/k} half of the generic accumulation emulation, other-effects.md §4 variants c and d).
    `compiled` (Lion too) fuses the update with torch.compile (a one-off compile of ~10-20 s on CPU).
    """

    name: Literal["tiger"] = "tiger"
    lr: PositiveFloat = 1e-3
    beta: Beta = 0.965
    weight_decay: NonNegativeFloat = 0.01
    parameter_scaling: bool = True
    nan_guard: bool = True
    shrink_ratio: Annotated[float, Field(gt=0, le=1)] = 0.99
    absorb_accumulation: bool = False
    update_every: PositiveInt = 1
    compiled: bool = False


class AmosSpec(OptimizerSpecBase):
    """Amos (arXiv 2210.11693), optimizers.md §5. `lr` is ξ (≈ 1/sqrt(batches per epoch)); Amos has
    its own adaptive decay, so it takes no weight_decay."""

    name: Literal["amos"] = "amos"
    lr: PositiveFloat = 0.01
    beta: Beta = 0.999
    decay_speed: PositiveFloat = 0.25
    finetune_rate: PositiveFloat = 1.0
    initial_b: NonNegativeFloat = 0.0
    momentum: Beta = 0.0
    clip_value: Optional[PositiveFloat] = None
    state_shape: Literal["reduced", "full", "scalar"] = "reduced"
    eta_rule: Literal["init_rms", "fan_in"] = "init_rms"
    eta_overrides: dict[ParameterKind, PositiveFloat] = {}


class MuonSpec(OptimizerSpecBase):
    """Muon (KellerJordan/Muon; arXiv 2502.16982), optimizers.md §6, for hidden matrices. Every other
    parameter (embeddings, head, biases, norms) goes to `aux_adamw` (Keller's auxiliary Adam by default;
    with `scale: match_rms_adamw` give Muon and aux_adamw the same AdamW lr and λ)."""

    name: Literal["muon"] = "muon"
    lr: PositiveFloat = 0.02
    momentum: Beta = 0.95
    nesterov: bool = True
    weight_decay: NonNegativeFloat = 0.0
    scale: Literal["original", "match_rms_adamw", "exact_rms"] = "original"
    ns_steps: PositiveInt = 5
    ns_dtype: Literal["float32", "bfloat16"] = "float32"
    aux_adamw: AdamWSpec = AdamWSpec(lr=3e-4, betas=(0.9, 0.95), eps=1e-10, weight_decay=0.0)

    def route(self, kind: str) -> OptimizerSpecBase:
        return self if kind == "matrix" else self.aux_adamw


_SPECS = (AdamWSpec, AdamSpec, SGDSpec, SignSGDSpec, SignumSpec, LionSpec, TigerSpec, AmosSpec, MuonSpec)
OptimizerSpec = Annotated[Union[_SPECS], Field(discriminator="name")]
OPTIMIZER_SPECS = {spec.model_fields["name"].default: spec for spec in _SPECS}


class ParamRule(Strict):
    """Routes the parameters it matches (by kind and/or name regex) to their own settings.

    The first matching rule wins. `optimizer` replaces the main optimizer for those parameters (e.g.
    AdamW for embeddings); `lr_scale` multiplies that optimizer's lr; `weight_decay` overrides its decay.
    """

    kind: Optional[ParameterKind] = None
    name: Optional[str] = None
    optimizer: Optional[OptimizerSpec] = None
    lr_scale: PositiveFloat = 1.0
    weight_decay: Optional[NonNegativeFloat] = None

    @model_validator(mode="after")
    def _matches_something(self):
        if self.kind is None and self.name is None:
            raise ValueError("a rule needs `kind` (one of embedding, head, matrix, bias, norm) or `name` (a regex)")
        if self.name is not None:
            try:
                re.compile(self.name)
            except re.error as error:
                raise ValueError(f"`name` is not a valid regular expression: {error}") from None
        return self

    def matches(self, parameter_name: str, kind: str) -> bool:
        if self.kind is not None and self.kind != kind:
            return False
        return self.name is None or re.search(self.name, parameter_name) is not None


class ParamGroupsConfig(Strict):
    """Parameter-group rules shared by every optimizer.

    - `no_decay`: kinds that get no weight decay (default: biases and norm gains).
    - `lazy_embeddings`: rows of an embedding whose gradient is exactly zero this step get no update at
      all (no decay, no momentum change, no move): fix (a) of embedding-drift.md §5.
    - `embedding_optimizer`: shorthand for a rule `{kind: embedding, optimizer: ...}`: fix (c), the hybrid.
    - `rules`: general routing by kind / name pattern.
    """

    no_decay: list[ParameterKind] = ["bias", "norm"]
    lazy_embeddings: bool = False
    embedding_optimizer: Optional[OptimizerSpec] = None
    rules: list[ParamRule] = []

    def resolved_rules(self) -> list[ParamRule]:
        """The routing rules in order, with the `embedding_optimizer` shorthand expanded first."""
        shorthand = [ParamRule(kind="embedding", optimizer=self.embedding_optimizer)] if self.embedding_optimizer else []
        return shorthand + list(self.rules)


# ------------------------------------------------------------------------------ schedule, training


class ScheduleConfig(Strict):
    """Learning-rate multiplier as a function of the step: linear warmup, then constant, cosine or linear
    decay to `min_lr_ratio`, or Su's Amos-derived decays (other-effects.md §3) that halve the lr after
    `half_life` steps: inverse-time 1/(1 + t/T), inverse-square 1/(1 + (√2 − 1)t/T)²."""

    name: Literal["constant", "cosine", "linear", "inverse_time", "inverse_square"] = "constant"
    warmup_steps: NonNegativeInt = 0
    min_lr_ratio: Fraction = 0.0
    half_life: Optional[PositiveInt] = None

    @model_validator(mode="after")
    def _half_life_for_inverse_decays(self):
        if self.name.startswith("inverse_") and self.half_life is None:
            raise ValueError(f"schedule {self.name} needs `half_life`: the step count after which the lr has halved")
        return self


class StopTarget(Strict):
    """Stop a run at the first probe step where metric `column` ≤ `value` (steps-to-target sweeps)."""

    column: str
    value: float


class TrainingConfig(Strict):
    """The loop. `batch_size` is the global number of examples (sequences, windows or regression rows)
    per optimizer step, whatever the accumulation. It is split into `grad_accum_steps` micro-batches, or
    into as many as needed to keep each at most `max_micro_batch`. `lr_scaling` multiplies every lr by
    B/B0 (linear) or sqrt(B/B0) (sqrt), B0 = `base_batch_size`. `compile` runs the model through
    torch.compile (its compile time shows in summary.json's `first_step_s`); `autocast` runs the forward
    pass under bf16 autocast (the CUDA fast path; parameters and optimizer state stay in `dtype`).
    `stop_at_target` ends the run (status completed, `reached_target_at_step` in the summary) once a
    logged metric reaches a target."""

    steps: PositiveInt = 1000
    batch_size: PositiveInt = 64
    grad_accum_steps: PositiveInt = 1
    grad_clip: Optional[PositiveFloat] = None
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float32", "float64", "bfloat16"] = "float32"
    divergence_factor: Annotated[float, Field(gt=1)] = 20.0
    max_micro_batch: Optional[PositiveInt] = None
    compile: bool = False
    autocast: bool = False
    lr_scaling: Literal["none", "linear", "sqrt"] = "none"
    base_batch_size: PositiveInt = 64
    stop_at_target: Optional[StopTarget] = None

    def accumulation(self) -> tuple[int, int]:
        """(micro-batches per step, examples per micro-batch)."""
        steps = self.grad_accum_steps
        if self.max_micro_batch is not None:
            while self.batch_size // steps > self.max_micro_batch or self.batch_size % steps:
                steps += 1
        return steps, self.batch_size // steps

    def lr_scale(self) -> float:
        ratio = self.batch_size / self.base_batch_size
        return {"none": 1.0, "linear": ratio, "sqrt": ratio**0.5}[self.lr_scaling]

    @model_validator(mode="after")
    def _accumulation_divides_batch(self):
        if self.batch_size % self.grad_accum_steps:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be divisible by grad_accum_steps ({self.grad_accum_steps})"
            )
        return self


class SampledNoiseScaleConfig(Strict):
    """Noise scales from fresh training examples at fixed parameters (probes/sampled_noise_scale.py;
    scaling-laws.md Exp D (1)–(3)): per-example gradients of `examples` examples give tr Σ, |G|² and
    B_simple; `two_batch_repeats` (small, big) batch pairs give the two-batch B_simple (0: skip);
    `hessian_examples` of those gradients and Hessian-vector products of the mean loss over
    `hessian_batch` examples give B_noise = tr(HΣ)/(GᵀHG) (0: skip). Measured at θ_0 (in summary.json's
    `initial_metrics`) and then at the first probe step where eval_loss ≤ each level of `at_eval_loss`;
    with no levels, at every probe step."""

    examples: Annotated[int, Field(ge=2)] = 1024
    two_batch_repeats: NonNegativeInt = 100
    two_batch_small: PositiveInt = 8
    two_batch_big: PositiveInt = 256
    hessian_examples: NonNegativeInt = 200
    hessian_batch: PositiveInt = 8192
    at_eval_loss: list[float] = []

    @model_validator(mode="after")
    def _consistent_sizes(self):
        if self.two_batch_repeats and self.two_batch_small >= self.two_batch_big:
            raise ValueError(f"two_batch_small ({self.two_batch_small}) must be smaller than two_batch_big "
                             f"({self.two_batch_big})")
        if self.hessian_examples > self.examples:
            raise ValueError(f"hessian_examples ({self.hessian_examples}) can be at most examples ({self.examples}): "
                             "they are the first of the per-example gradients")
        return self


class ProbesConfig(Strict):
    """Which probes run, and how often (every `every` optimizer steps, plus the first and the last).

    `noise_scale` logs the two-batch gradient-noise-scale estimate (probes/noise_scale.py): the small
    batch is the first `noise_scale_small_batch` examples of the step's batch (default: a quarter),
    and the estimates are averaged with decay `noise_scale_decay` over probe steps.
    `eval_examples` > 0 logs `eval_loss`: the mean loss over that many examples of the held-out split,
    drawn once at the start (the same examples at every probe step, whatever the batch size). `loss_change` logs the measured
    loss change of the step on its own batch against the first-order prediction g·Δθ (probes/first_order.py).
    `adam_curvature` logs the slope of log √v̂ against log h over the second half of training, for Adam on
    a model with a known Hessian diagonal h (probes/curvature.py). `sampled_noise_scale` measures the noise
    scales from per-example gradients and Hessian-vector products (see SampledNoiseScaleConfig)."""

    every: PositiveInt = 50
    eval_examples: NonNegativeInt = 0
    embedding: bool = True
    updates: bool = True
    loss_change: bool = False
    adam_curvature: bool = False
    noise_scale: bool = False
    noise_scale_small_batch: Optional[PositiveInt] = None
    noise_scale_decay: Beta = 0.9
    sampled_noise_scale: Optional[SampledNoiseScaleConfig] = None

    @model_validator(mode="after")
    def _levels_need_eval_loss(self):
        if self.sampled_noise_scale and self.sampled_noise_scale.at_eval_loss and not self.eval_examples:
            raise ValueError("sampled_noise_scale.at_eval_loss reads eval_loss: set probes.eval_examples > 0")
        return self


class OutputConfig(Strict):
    """Where runs go; checkpoints every `checkpoint_every` steps (0: only at the end and on Ctrl-C/SIGTERM),
    keeping the last `keep_checkpoints`. `final_checkpoint: false` keeps no checkpoint once a run has
    finished (sweeps set it: a finished trial is never resumed, and thousands of checkpoints fill disks)."""

    runs_dir: str = "runs"
    checkpoint_every: NonNegativeInt = 0
    keep_checkpoints: PositiveInt = 2
    final_checkpoint: bool = True


class EffectConfig(Strict):
    """What this config is meant to show, so that `optlab report` can give a verdict.

    expect: `reproduced` (the effect should appear), `absent` (it should not), `fixed` (a fix should
    cut the effect at least 10× against the `baseline` run, named by its config name).
    """

    name: Literal["embedding_drift"]
    expect: Literal["reproduced", "absent", "fixed"]
    baseline: Optional[str] = None

    @model_validator(mode="after")
    def _fix_needs_baseline(self):
        if self.expect == "fixed" and not self.baseline:
            raise ValueError("expect: fixed needs `baseline`: the config name of the same run without the fix")
        return self


class ExperimentConfig(Strict):
    name: Optional[str] = None
    description: str = ""
    model: ModelConfig = Field(default_factory=BagModelConfig)
    data: DataConfig = Field(default_factory=ZipfDataConfig)
    optimizer: OptimizerSpec = Field(default_factory=AdamWSpec)
    param_groups: ParamGroupsConfig = Field(default_factory=ParamGroupsConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    probes: ProbesConfig = Field(default_factory=ProbesConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    effect: Optional[EffectConfig] = None

    @model_validator(mode="after")
    def _clipping_needs_the_summed_gradient(self):
        specs = [self.optimizer] + [rule.optimizer for rule in self.param_groups.resolved_rules() if rule.optimizer]
        absorbing = any(getattr(spec, "absorb_accumulation", False) for spec in specs)
        if absorbing and self.training.grad_clip is not None and self.training.accumulation()[0] > 1:
            raise ValueError("training.grad_clip cannot be used with Tiger's absorb_accumulation (the summed "
                             "gradient never exists); drop one of them")
        return self

    @field_validator("name")
    @classmethod
    def _name_is_a_relative_path(cls, name):
        if name is not None and (not re.fullmatch(r"[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*", name) or ".." in name):
            raise ValueError("use letters, digits, '_', '-', '.' in '/'-separated parts, without '..' (runs stay inside runs_dir)")
        return name

    def fingerprint(self) -> str:
        """Short hash of the fully resolved experiment (what is trained, not its name or where it is
        written): identical experiments give identical fingerprints on every machine."""
        text = json.dumps(self.model_dump(mode="json", exclude={"name", "description", "output", "effect"}), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


# ----------------------------------------------------------------------------------- loading


def read_yaml_mapping(path: Path) -> dict:
    """Read a YAML file with the safe loader; the result must be a mapping. Errors name the file."""
    if not path.exists():
        raise ConfigError(f"{path}: file not found; give the path of a YAML config (see `optlab list configs`)")
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory; give the path of a YAML config file inside it")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot be read ({error}); give a readable UTF-8 YAML file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.constructor.ConstructorError as error:
        raise ConfigError(f"{path}: unsupported YAML tag ({error.problem}); configs hold plain values only (safe loader)") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None
    if data is None:
        raise ConfigError(f"{path}: the file is empty; a config is a YAML mapping such as `optimizer: {{name: tiger}}`")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (model, data, optimizer, ...), not a {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """`training.lr=3e-4` -> (["training", "lr"], 0.0003). The value is read as YAML (safe loader)."""
    key, sep, raw = text.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: write overrides as key.sub=value, e.g. optimizer.lr=3e-4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str):
        try:
            value = float(value) if re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value) else value
        except ValueError:
            pass
    return key.split("."), value


def apply_override(data: dict, path: list[str], value: Any, source: str) -> None:
    """Set data[path] = value, creating intermediate mappings; list items are addressed by index."""
    node: Any = data
    for depth, part in enumerate(path[:-1]):
        if isinstance(node, list):
            node = _list_item(node, part, path[: depth + 1], source)
            continue
        if not isinstance(node.get(part, {}), (dict, list)):
            raise ConfigError(f"{source}: override {'.'.join(path)}: {'.'.join(path[:depth + 1])} is a value, not a section")
        node = node.setdefault(part, {})
    if isinstance(node, list):
        index = _list_index(node, path[-1], path, source)
        node[index] = value
    else:
        node[path[-1]] = value


def _list_index(items: list, part: str, path: list[str], source: str) -> int:
    if not part.isdigit() or int(part) >= len(items):
        raise ConfigError(f"{source}: override {'.'.join(path)}: {part!r} is not an index of this list (0..{len(items) - 1})")
    return int(part)


def _list_item(items: list, part: str, path: list[str], source: str) -> Any:
    return items[_list_index(items, part, path, source)]


def load_config(path: str | Path, overrides: list[str] = ()) -> ExperimentConfig:
    """Load, override and validate a config file. Raises ConfigError with one line naming the problem."""
    path = Path(path)
    data = read_yaml_mapping(path)
    for override in overrides:
        keys, value = parse_override(override)
        apply_override(data, keys, value, str(path))
    data.setdefault("name", path.stem)
    return validate_config(data, source=str(path))


def validate_config(data: dict, source: str = "<config>") -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error, source)) from None


def describe_validation_error(error: ValidationError, source: str) -> str:
    """One line: file, key path, what is wrong, and (for unknown keys) the closest valid key."""
    first = error.errors()[0]
    loc, message = _readable_location(first["loc"]), first["msg"]
    path = ".".join(str(part) for part in loc) or "(top level)"
    if first["type"] == "extra_forbidden":
        valid = _valid_keys(ExperimentConfig, first["loc"][:-1])
        guess = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        hint = f"did you mean `{guess[0]}`?" if guess else f"valid keys here: {', '.join(valid)}"
        message = f"unknown key; {hint}"
    elif first["type"] == "union_tag_invalid":
        tags = first.get("ctx", {}).get("expected_tags", "")
        message = f"unknown name {first['input'].get(_tag_key(first)) if isinstance(first['input'], dict) else first['input']!r}; choose one of {tags}"
        path = f"{path}.name" if path != "(top level)" else "name"
    elif first["type"] == "union_tag_not_found":
        path = f"{path}.name"
        message = f"missing; choose one of {', '.join(_valid_tags(ExperimentConfig, first['loc']))}"
    else:
        message = message.replace("Value error, ", "")
        if "input" in first and not isinstance(first["input"], (dict, list)):
            message = f"{message} (got {first['input']!r})"
    more = f" (and {len(error.errors()) - 1} more)" if len(error.errors()) > 1 else ""
    return f"{source}: {path}: {message}{more}"


def _tag_key(error: dict) -> str:
    return error.get("ctx", {}).get("discriminator", "'name'").strip("'")


def _readable_location(loc: tuple) -> list:
    """Drop the discriminator tags pydantic inserts into locations inside tagged unions."""
    names = set(OPTIMIZER_SPECS) | {"bag", "gpt", "linreg", "nqm", "zipf", "stdlib-text", "linear-regression",
                                    "gaussian-noise"}
    return [part for part in loc if not (isinstance(part, str) and part in names)]


def _valid_tags(model: type[BaseModel], loc: tuple) -> list[str]:
    """The names a tagged union at `loc` accepts (e.g. the optimizer names)."""
    *parents, field_name = loc
    fields = _model_at(model, tuple(parents))
    union = _model_of(fields.model_fields[field_name].annotation) if isinstance(fields, type) else None
    return list(union) if isinstance(union, dict) else []


def _valid_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """The field names valid at `loc` (a pydantic error location, union tags included)."""
    current = _model_at(model, loc)
    return list(current.model_fields) if isinstance(current, type) else []


def _model_at(model: type[BaseModel], loc: tuple) -> Any:
    """Walk a pydantic error location (union tags included) down the schema to a model class."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if isinstance(current, dict):  # a tagged union: the tag picks the member
            current = current.get(part, current)
            continue
        field = current.model_fields.get(part)
        if field is None:
            return None
        current = _model_of(field.annotation)
        if current is None:
            return None
    return current


def _model_of(annotation: Any) -> Any:
    """The model class behind an annotation, or {tag: class} for a tagged union."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    members = [_model_of(arg) for arg in getattr(annotation, "__args__", ())]
    models = [member for member in members if isinstance(member, type)]
    if len(models) == 1:
        return models[0]
    if models:
        return {m.model_fields["name"].default: m for m in models}
    return next((member for member in members if isinstance(member, dict)), None)


def config_differences(old: ExperimentConfig, new: ExperimentConfig) -> list[str]:
    """Dotted keys whose values differ between two resolved configs, e.g. ['optimizer.lr']."""

    def flatten(value, prefix=""):
        if isinstance(value, dict):
            return {k: v for key, item in value.items() for k, v in flatten(item, f"{prefix}{key}.").items()}
        return {prefix.rstrip("."): value}

    a, b = flatten(old.model_dump(mode="json")), flatten(new.model_dump(mode="json"))
    return sorted(key for key in a.keys() | b.keys() if a.get(key) != b.get(key))


def dump_config(config: ExperimentConfig) -> str:
    """The fully resolved config as YAML (what a run directory stores)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
