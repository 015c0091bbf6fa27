"""The YAML schema of every built-in optimizer, and of the parameter-group rules (torch-free).

Each spec's fields map one-to-one onto its optimizer's constructor keywords (`keywords()`), and
`component` names the optimizer by import path. An optimizer from another package or the user's own
file is named by import path instead (`optimizer: {name: "package.module:Class", ...}`); see
optlab/components.py. Adding a built-in optimizer: its module in optlab/optim/, and its spec here,
listed in BUILTIN_OPTIMIZERS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Optional

from pydantic import Field, model_validator

from optlab.components import BuiltinComponent, PluginComponent, component_union
from optlab.fields import Beta, NonNegativeFloat, PositiveFloat, PositiveInt, Strict

PARAMETER_KINDS = ("embedding", "head", "matrix", "bias", "norm")
ParameterKind = Literal["embedding", "head", "matrix", "bias", "norm"]
NO_DECAY_KINDS = ("bias", "norm")  # the default policy: biases and norm gains get no weight decay


class OptimizerSpec(BuiltinComponent):
    """Hyper-parameters of one optimizer; the fields map one-to-one onto its constructor."""

    group: ClassVar[str] = "optlab.optimizers"

    def route(self, kind: str) -> "OptimizerSpec":
        """The spec that should update parameters of `kind` (Muon hands non-matrices to AdamW)."""
        return self

    def for_run(self, parameters: int, steps: int, device_type: str) -> "OptimizerSpec":
        """The spec with its automatic choices made for a run of `steps` steps over `parameters` parameters
        (Lion: whether to compile its update)."""
        return self


class AdamWSpec(OptimizerSpec):
    """torch.optim.AdamW: decoupled, lr-coupled decay; ε outside the square root (docs/science/optimizers.md §4).
    `fused`: null (default) uses torch's single-kernel implementation wherever it applies (floating-point
    parameters on CPU or CUDA) and torch's default elsewhere; true forces it, false keeps the unfused path
    (optlab/optim/torch_adam.py)."""

    component: ClassVar[str] = "optlab.optim.torch_adam:adamw"
    name: Literal["adamw"] = "adamw"
    lr: PositiveFloat = 1e-3
    betas: tuple[Beta, Beta] = (0.9, 0.999)
    eps: PositiveFloat = 1e-8
    weight_decay: NonNegativeFloat = 0.01
    fused: Optional[bool] = None


class AdamSpec(AdamWSpec):
    """torch.optim.Adam: weight decay is L2 added to the gradient; β = 0 and large ε allowed (scaling laws)."""

    component: ClassVar[str] = "optlab.optim.torch_adam:adam"
    name: Literal["adam"] = "adam"
    weight_decay: NonNegativeFloat = 0.0


class SGDSpec(OptimizerSpec):
    """torch.optim.SGD with (optionally Nesterov) momentum; weight decay is L2 added to the gradient."""

    component: ClassVar[str] = "torch.optim:SGD"
    name: Literal["sgd"] = "sgd"
    lr: PositiveFloat = 0.1
    momentum: Beta = 0.9
    nesterov: bool = False
    weight_decay: NonNegativeFloat = 0.0


COMPILE_PAYS_AT = 8e10  # parameters × steps from which compiling a sign optimizer's update saves time on CPU


class CompilableSpec(OptimizerSpec):
    """An optimizer whose update can run through torch.compile (Lion, Tiger, Signum, SignSGD).

    `compiled`: true fuses the update into one pass over memory per tensor (docs/benchmarks.md §5: 0.5-1.5×
    fused AdamW's step on the GPT-like set, against 1.0-3.0× for the eager foreach update), false keeps it
    eager; null (the default) compiles on CPU when parameters × steps ≥ COMPILE_PAYS_AT. The first compile
    in a process with a cold compile cache (a new machine, a user's first run) costs 4-17 s and the
    compiled step saves ≈ 1 ns per parameter per step; at 2·10¹⁰ a whole run of Lion or Tiger with the
    compile took as long as the eager one (scripts/bench_optim.py --whole-run, which compiles cold), so
    the threshold is 4× that break-even: a short run or a sweep of small trials stays eager. On CUDA the
    eager foreach update is already a few fused kernels, so null stays eager there. Each subclass declares
    the field `compiled` last, so that it lists after the optimizer's own hyper-parameters."""

    def for_run(self, parameters: int, steps: int, device_type: str) -> "CompilableSpec":
        if self.compiled is not None:
            return self
        return self.model_copy(update={"compiled": device_type == "cpu" and parameters * steps >= COMPILE_PAYS_AT})


class SignSGDSpec(CompilableSpec):
    """SignSGD (arXiv 1802.04434): θ ← θ(1 − ηλ) − η·sign(g), docs/science/optimizers.md §3."""

    component: ClassVar[str] = "optlab.optim.signsgd:SignSGD"
    name: Literal["signsgd"] = "signsgd"
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 0.0
    compiled: Optional[bool] = None


class SignumSpec(CompilableSpec):
    """Signum: sign of the momentum m ← βm + (1 − β)g, docs/science/optimizers.md §3."""

    component: ClassVar[str] = "optlab.optim.signsgd:Signum"
    name: Literal["signum"] = "signum"
    lr: PositiveFloat = 1e-3
    beta: Beta = 0.9
    weight_decay: NonNegativeFloat = 0.0
    compiled: Optional[bool] = None


class LionSpec(CompilableSpec):
    """Lion (arXiv 2302.06675), docs/science/optimizers.md §1."""

    component: ClassVar[str] = "optlab.optim.lion:Lion"
    name: Literal["lion"] = "lion"
    lr: PositiveFloat = 1e-4
    betas: tuple[Beta, Beta] = (0.9, 0.99)
    weight_decay: NonNegativeFloat = 0.0
    compiled: Optional[bool] = None


class TigerSpec(CompilableSpec):
    """Tiger (kexue.fm/archives/9512), docs/science/optimizers.md §2.

    `parameter_scaling` switches the per-parameter rules of §2.3 (0.5× lr and no decay for biases and
    norm gains, ×RMS for matrices, ×per-row RMS for embeddings); off, Tiger is Lion with β1 = β2 = β.
    `accumulation_steps: k` folds k micro-batches into the momentum (§2.4, no gradient buffer): the run
    must use k micro-batches (training.grad_accum_steps), and Tiger steps after each of them.
    `update_every: k` updates the momentum every step but moves the parameters only every k-th step (the
    lr × χ_{t/k} half of the generic accumulation emulation, docs/science/other-effects.md §4 c and d).
    `compiled` (see CompilableSpec) fuses the whole step, the NaN guard's test and the RMS scales included,
    into one pass per tensor: on the GPT-like set of docs/benchmarks.md the default rules go from 2.4-3.0×
    to 1.3-1.5× fused AdamW's step.
    """

    component: ClassVar[str] = "optlab.optim.tiger:Tiger"
    name: Literal["tiger"] = "tiger"
    lr: PositiveFloat = 1e-3
    beta: Beta = 0.965
    weight_decay: NonNegativeFloat = 0.01
    parameter_scaling: bool = True
    nan_guard: bool = True
    shrink_ratio: float = Field(0.99, gt=0, le=1)
    accumulation_steps: PositiveInt = 1
    update_every: PositiveInt = 1
    compiled: Optional[bool] = None


class AmosSpec(OptimizerSpec):
    """Amos (arXiv 2210.11693), docs/science/optimizers.md §5. `lr` is ξ (≈ 1/sqrt(batches per epoch)); Amos
    has its own adaptive decay, so it takes no weight_decay."""

    component: ClassVar[str] = "optlab.optim.amos:Amos"
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


class MuonSpec(OptimizerSpec):
    """Muon (KellerJordan/Muon; arXiv 2502.16982), docs/science/optimizers.md §6, for hidden matrices. Every
    other parameter (embeddings, head, biases, norms) goes to `aux_adamw` (Keller's auxiliary Adam by
    default; with `scale: match_rms_adamw` give Muon and aux_adamw the same AdamW lr and λ)."""

    component: ClassVar[str] = "optlab.optim.muon:Muon"
    not_keywords: ClassVar[frozenset[str]] = frozenset({"name", "aux_adamw"})
    name: Literal["muon"] = "muon"
    lr: PositiveFloat = 0.02
    momentum: Beta = 0.95
    nesterov: bool = True
    weight_decay: NonNegativeFloat = 0.0
    scale: Literal["original", "match_rms_adamw", "exact_rms"] = "original"
    ns_steps: PositiveInt = 5
    ns_dtype: Literal["float32", "bfloat16"] = "float32"
    aux_adamw: AdamWSpec = AdamWSpec(lr=3e-4, betas=(0.9, 0.95), eps=1e-10, weight_decay=0.0)

    def route(self, kind: str) -> OptimizerSpec:
        return self if kind == "matrix" else self.aux_adamw


class PluginOptimizerSpec(PluginComponent):
    """Any torch.optim.Optimizer subclass, or a factory(params, **keywords) returning one, by import path
    or entry point (`optlab.optimizers`). Its `lr` (and `weight_decay`, if it has one) take part in the
    parameter-group rules like a built-in's."""

    group: ClassVar[str] = "optlab.optimizers"
    leading: ClassVar[int] = 1  # params

    @classmethod
    def check_target(cls, target) -> str | None:
        import inspect

        import torch

        if inspect.isclass(target) and not issubclass(target, torch.optim.Optimizer):
            return "is not a torch.optim.Optimizer subclass (nor a factory function returning one)"
        return PluginComponent.check_target(target)

    def route(self, kind: str) -> "PluginOptimizerSpec":
        return self

    def for_run(self, parameters: int, steps: int, device_type: str) -> "PluginOptimizerSpec":
        return self  # its keywords are the user's, as written


BUILTIN_OPTIMIZERS = (AdamWSpec, AdamSpec, SGDSpec, SignSGDSpec, SignumSpec, LionSpec, TigerSpec, AmosSpec, MuonSpec)
OptimizerConfig = component_union(BUILTIN_OPTIMIZERS, PluginOptimizerSpec)


class ParamRule(Strict):
    """Routes the parameters it matches (by kind and/or name regex) to their own settings.

    The first matching rule wins. `optimizer` replaces the main optimizer for those parameters (e.g.
    AdamW for embeddings); `lr_scale` multiplies that optimizer's lr; `weight_decay` overrides its decay.
    """

    kind: Optional[ParameterKind] = None
    name: Optional[str] = None
    optimizer: Optional[OptimizerConfig] = None
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
    """Parameter-group rules shared by every optimizer (optlab/optim/groups.py).

    - `no_decay`: kinds that get no weight decay (default: biases and norm gains).
    - `lazy_embeddings`: rows of an embedding whose gradient is exactly zero this step get no update at
      all (no decay, no momentum change, no move): fix (a) of docs/science/embedding-drift.md §5.
    - `embedding_optimizer`: shorthand for a rule `{kind: embedding, optimizer: ...}`: fix (c), the hybrid.
    - `rules`: general routing by kind / name pattern.
    """

    no_decay: list[ParameterKind] = list(NO_DECAY_KINDS)
    lazy_embeddings: bool = False
    embedding_optimizer: Optional[OptimizerConfig] = None
    rules: list[ParamRule] = []

    def resolved_rules(self) -> list[ParamRule]:
        """The routing rules in order, with the `embedding_optimizer` shorthand expanded first."""
        shorthand = [ParamRule(kind="embedding", optimizer=self.embedding_optimizer)] if self.embedding_optimizer else []
        return shorthand + list(self.rules)

    def place(self, main: OptimizerSpec, parameter_name: str, kind: str) -> "Placement":
        """Where one parameter goes: the first matching rule's optimizer (else `main`), routed by kind
        (Muon hands non-matrices to its AdamW), its lr × the rule's lr_scale, the rule's weight decay
        (else the optimizer's own; none for kinds in `no_decay`), and whether its rows are lazy."""
        rule = next((rule for rule in self.resolved_rules() if rule.matches(parameter_name, kind)), None)
        spec = (rule.optimizer if rule is not None and rule.optimizer is not None else main).route(kind)
        lr = spec.lr * (rule.lr_scale if rule is not None else 1.0)
        own_decay = getattr(spec, "weight_decay", 0.0)  # Amos (and some optimizers by import path) have none
        weight_decay = rule.weight_decay if rule is not None and rule.weight_decay is not None else own_decay
        if kind in self.no_decay:
            weight_decay = 0.0
        return Placement(spec, lr, weight_decay, kind, self.lazy_embeddings and kind == "embedding")


@dataclass
class Placement:
    """Where one parameter goes: which optimizer spec, with which lr and decay."""

    spec: Any
    lr: float
    weight_decay: float
    kind: str
    lazy_rows: bool
