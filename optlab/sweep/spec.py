"""Sweep files: a base config, axes (Cartesian `grid`, parallel `zip`, `seeds`), exclusions and the
metric that defines the best cell. Expansion gives trials whose id is a hash of the resolved config.

    name: scaling/exp_a
    base: ../exp_a_base.yaml          # a path (relative to this file) or an inline mapping
    set: {training.steps: 600}        # fixed changes to the base, the same for every trial
    grid:
      training.batch_size: [1, 2, 4]
      optimizer.lr: {logspace: [1.0e-3, 1.5, 41]}
    zip: {optimizer.lr: [...], optimizer.weight_decay: [...]}     # same-length lists, varied together
    variants:                         # named sets of overrides, crossed with the grid (a `variant` column)
      plain: {}
      update_every_4: {optimizer.update_every: 4}
    seeds: [0, 1, 2]
    exclude: [{training.batch_size: 1, optimizer.lr: [1.0, 1.5]}]  # drop trials matching every key
    metric: {column: population_loss, reduce: final, log: true, minimize: true}
    fit_noise_scale: true             # fit η*(B) = η_max/(1 + B_noise/B) (the SGD law) in the report
    group_key: optimizer              # optional: an η*(B) curve per value of this axis
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from optlab.config import ExperimentConfig, apply_override, describe_validation_error, read_yaml_mapping, validate_config
from optlab.effects import effect_names, is_known
from optlab.errors import ConfigError
from optlab.fields import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, RunName, Strict


class Spaced(Strict):
    """Log- or linearly spaced values: {logspace: [low, high, count]} or {linspace: [...]}."""

    logspace: Optional[tuple[float, float, PositiveInt]] = None
    linspace: Optional[tuple[float, float, PositiveInt]] = None

    @model_validator(mode="after")
    def _exactly_one(self):
        if (self.logspace is None) == (self.linspace is None):
            raise ValueError("give exactly one of logspace: [low, high, count] or linspace: [low, high, count]")
        if self.logspace is not None and min(self.logspace[:2]) <= 0:
            raise ValueError(f"logspace bounds must be positive (got {list(self.logspace[:2])}); use linspace for a range from 0")
        return self

    def values(self) -> list[float]:
        low, high, count = self.logspace or self.linspace
        if count == 1:
            return [low]
        if self.logspace is not None:
            return [math.exp(math.log(low) + (math.log(high) - math.log(low)) * i / (count - 1)) for i in range(count)]
        return [low + (high - low) * i / (count - 1) for i in range(count)]


def _axis_kind(values: Any) -> str:
    return "spaced" if isinstance(values, (dict, Spaced)) else "values"


# One grid axis: a non-empty list of values, or {logspace|linspace: [low, high, count]}.
Axis = Annotated[Union[Annotated[Annotated[list[Any], Field(min_length=1)], Tag("values")],
                       Annotated[Spaced, Tag("spaced")]], Discriminator(_axis_kind)]


class MetricConfig(Strict):
    """How one trial becomes one number, and whether smaller is better.

    reduce: `final` (the column's last logged value), `mean_last` (mean of the last `last_n` values),
    `steps_to_target` (first logged step where the column ≤ `target`; +inf if never).
    log: take the natural log of the trial's number before seeds are averaged.
    Diverged trials count as +inf (they bound the best lr from above).
    """

    column: str = "loss"
    reduce: Literal["final", "mean_last", "steps_to_target"] = "final"
    last_n: PositiveInt = 5
    target: Optional[float] = None
    log: bool = False
    minimize: bool = True

    @model_validator(mode="after")
    def _target_for_steps(self):
        if self.reduce == "steps_to_target" and self.target is None:
            raise ValueError("reduce: steps_to_target needs `target`")
        return self

    def describe(self) -> str:
        if self.reduce == "final":
            what = f"final {self.column}"
        elif self.reduce == "mean_last":
            what = f"mean of the last {self.last_n} {self.column}"
        else:
            what = f"steps to {self.column} ≤ {self.target:g}"
        return f"{'mean over seeds of log ' if self.log else 'mean over seeds of '}{what}"


class TrialResources(Strict):
    """What one trial asks of a Ray cluster (`--executor ray`): CPUs (also its torch threads, at least one)
    and GPUs, fractions allowed (gpus: 0.25 packs four small trials onto one device)."""

    cpus: PositiveFloat = 1.0
    gpus: NonNegativeFloat = 0.0


class SlurmOptions(Strict):
    """The SLURM job array of `--executor slurm` (through submitit): one array task per trial, at most
    `array_parallelism` at a time, each with `time_minutes`, `mem_gb` and the sweep's `resources` (CPUs and
    GPUs rounded up to whole ones) on `partition`. `cluster: local` runs the same array with submitit's
    local executor (local processes), to try a SLURM sweep where there is no SLURM."""

    cluster: Literal["slurm", "local"] = "slurm"
    partition: Optional[str] = None
    time_minutes: PositiveInt = 60
    mem_gb: PositiveFloat = 4.0
    array_parallelism: PositiveInt = 64
    max_timeouts: NonNegativeInt = 3


class SweepConfig(Strict):
    name: RunName
    description: str = ""
    base: Union[str, dict[str, Any]]
    set: dict[str, Any] = {}
    grid: dict[str, Axis] = {}
    zip: dict[str, Annotated[list[Any], Field(min_length=1)]] = {}
    variants: dict[str, dict[str, Any]] = {}
    seeds: Annotated[list[int], Field(min_length=1)] = [0]
    exclude: list[dict[str, Any]] = []
    metric: MetricConfig = Field(default_factory=MetricConfig)
    lr_key: str = "optimizer.lr"
    batch_key: str = "training.batch_size"
    group_key: Optional[str] = None
    effect: Optional[str] = None
    fit_noise_scale: bool = True
    runs_dir: str = "runs"
    checkpoint_every: NonNegativeInt = 0
    resources: TrialResources = Field(default_factory=TrialResources)
    slurm: SlurmOptions = Field(default_factory=SlurmOptions)

    @field_validator("effect")
    @classmethod
    def _registered(cls, name):
        if name is not None and not is_known(name):
            raise ValueError(f"unknown effect; choose one of {', '.join(effect_names())} (`optlab list effects`)")
        return name

    @model_validator(mode="after")
    def _seeds_only_in_seeds(self):
        """`seeds` sets training.seed in every trial: a seed axis anywhere else would be silently replaced."""
        for section in ("grid", "zip", "set"):
            if "training.seed" in getattr(self, section):
                raise ValueError(f"{section}: training.seed is the `seeds` axis; list the seeds there "
                                 f"(seeds: [0, 1, 2]) and remove it from {section}")
        for name, overrides in self.variants.items():
            if "training.seed" in overrides:
                raise ValueError(f"variants.{name}: training.seed is the `seeds` axis; list the seeds there")
        return self

    @model_validator(mode="after")
    def _zip_lists_align(self):
        lengths = {len(values) for values in self.zip.values()}
        if len(lengths) > 1:
            raise ValueError(f"zip lists must have the same length (got {sorted(lengths)})")
        return self


@dataclass
class Trial:
    id: str
    overrides: dict[str, Any]
    config: ExperimentConfig


def load_sweep(path: Path) -> tuple[SweepConfig, dict]:
    """The validated sweep and its base config mapping (a path is read relative to the sweep file)."""
    data = read_yaml_mapping(path)
    data.setdefault("name", path.stem)
    try:
        sweep = SweepConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error, str(path), schema=SweepConfig)) from None
    if isinstance(sweep.base, str):
        base = read_yaml_mapping((path.parent / sweep.base).resolve())
    else:
        base = copy.deepcopy(sweep.base)
    return sweep, base


def expand(sweep: SweepConfig, base: dict, source: str = "<sweep>") -> list[Trial]:
    """All trials of the sweep, in axis order, deduplicated by id, exclusions removed."""
    grid_axes = {key: (values.values() if isinstance(values, Spaced) else values) for key, values in sweep.grid.items()}
    zip_rows = [dict(zip(sweep.zip, row)) for row in zip(*sweep.zip.values())] if sweep.zip else [{}]
    variants = sweep.variants or {None: {}}
    trials, seen = [], set()
    for variant, variant_overrides in variants.items():
        for grid_values in itertools.product(*grid_axes.values()):
            for zip_row in zip_rows:
                for seed in sweep.seeds:
                    cell = {**dict(zip(grid_axes, grid_values)), **zip_row, "training.seed": seed}
                    labelled = cell if variant is None else {"variant": variant, **cell}
                    if any(_matches(labelled, rule) for rule in sweep.exclude):
                        continue
                    config = _trial_config(sweep, base, {**variant_overrides, **cell}, source)
                    trial_id = config.fingerprint()
                    if trial_id not in seen:
                        seen.add(trial_id)
                        trials.append(Trial(trial_id, labelled, config))
    return trials


def _matches(cell: dict, rule: dict) -> bool:
    return all(key in cell and (cell[key] in value if isinstance(value, list) else cell[key] == value)
               for key, value in rule.items())


def _trial_config(sweep: SweepConfig, base: dict, cell: dict, source: str) -> ExperimentConfig:
    data = copy.deepcopy(base)
    for key, value in {**sweep.set, **cell}.items():
        apply_override(data, key.split("."), copy.deepcopy(value), source)  # a copy: later keys may edit it
    data["name"] = sweep.name
    output = data.setdefault("output", {})
    output["checkpoint_every"] = sweep.checkpoint_every
    output["final_checkpoint"] = False  # finished trials are never resumed
    cell_text = ", ".join(f"{key}={value}" for key, value in cell.items())
    return validate_config(data, source=f"{source} (trial {cell_text})")


def total_steps(trials: list[Trial]) -> int:
    return sum(trial.config.training.steps for trial in trials)
