"""Experiment configuration: the frame of a config file, safe YAML loading and `key.sub=value` overrides.

This module must not import torch: `optlab validate` and `optlab --help` stay fast.

A config file has the sections model, data, optimizer, param_groups, schedule, training, probes,
output and (optionally) effect. Every section has defaults that work; unknown keys are errors. The
component sections take their schema from beside their component: models/schema.py, data/schema.py,
optim/schema.py (built-in names, import paths and entry points: components.py), schedules.py,
probes/schema.py; effect names come from the effects registry (effects/__init__.py).
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import json
import re
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import yaml
from pydantic import BaseModel, Field, Tag, ValidationError, field_validator, model_validator

from optlab.components import PLUGIN, entry_points
from optlab.data.schema import DataConfig, ZipfDataSpec
from optlab.effects import effect_names, is_known
from optlab.errors import ConfigError
from optlab.fields import NonNegativeInt, PositiveFloat, PositiveInt, RunName, Strict
from optlab.models.schema import BagModelSpec, ModelConfig
from optlab.optim.schema import AdamWSpec, OptimizerConfig, ParamGroupsConfig
from optlab.probes.schema import ProbesConfig
from optlab.schedules import ScheduleConfig


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
    logged metric reaches a target. `check_memory` refuses, before anything is allocated, a run whose
    estimated memory exceeds what the machine has available (optlab/memory.py); false tries anyway."""

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
    check_memory: bool = True

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


class OutputConfig(Strict):
    """Where runs go; checkpoints every `checkpoint_every` steps (0: only at the end and on Ctrl-C/SIGTERM),
    keeping the last `keep_checkpoints`. `final_checkpoint: false` keeps no checkpoint once a run has
    finished (sweeps set it: a finished trial is never resumed, and thousands of checkpoints fill disks).
    `loggers` mirrors the metrics into experiment trackers (tensorboard, wandb: optlab/trackers.py)."""

    runs_dir: str = "runs"
    checkpoint_every: NonNegativeInt = 0
    keep_checkpoints: PositiveInt = 2
    final_checkpoint: bool = True
    loggers: list[Literal["tensorboard", "wandb"]] = []

    @field_validator("loggers")
    @classmethod
    def _loggers_installed(cls, loggers: list[str]) -> list[str]:
        for name in loggers:
            if importlib.util.find_spec(name) is None:
                raise ValueError(f"{name} is not installed; pip install 'optlab[{name}]' or remove it from the list")
        if len(set(loggers)) != len(loggers):
            raise ValueError("each logger at most once")
        return loggers


class EffectConfig(Strict):
    """What this run is meant to show, so that `optlab report` can give a verdict (`optlab list effects`).

    expect: `reproduced` (the effect should appear), `absent` (it should not), `fixed` (a fix should
    cut the effect at least 10× against the `baseline` run, named by its config name).
    """

    name: str
    expect: Literal["reproduced", "absent", "fixed"]
    baseline: Optional[str] = None

    @field_validator("name")
    @classmethod
    def _registered(cls, name):
        if not is_known(name):
            raise ValueError(f"unknown effect; choose one of {', '.join(effect_names())} (`optlab list effects`)")
        return name

    @model_validator(mode="after")
    def _fix_needs_baseline(self):
        if self.expect == "fixed" and not self.baseline:
            raise ValueError("expect: fixed needs `baseline`: the config name of the same run without the fix")
        return self


class ExperimentConfig(Strict):
    name: Optional[RunName] = None
    description: str = ""
    model: ModelConfig = Field(default_factory=BagModelSpec)
    data: DataConfig = Field(default_factory=ZipfDataSpec)
    optimizer: OptimizerConfig = Field(default_factory=AdamWSpec)
    param_groups: ParamGroupsConfig = Field(default_factory=ParamGroupsConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    probes: ProbesConfig = Field(default_factory=ProbesConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    effect: Optional[EffectConfig] = None

    def fingerprint(self) -> str:
        """Short hash of the fully resolved experiment (what is trained, not its name or where it is
        written): identical experiments give identical fingerprints on every machine."""
        what = self.model_dump(mode="json", exclude={"name": True, "description": True, "output": True, "effect": True,
                                                     "training": {"check_memory"}})
        text = json.dumps(what, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def population_key(self) -> str | None:
        """Runs with equal keys see the same examples in the same order from the same initial weights, and
        can be trained together (optlab/population.py): the config without what a population varies (the
        optimizer, its parameter-group rules, the lr schedule; name, description, effect). None for a run
        that never joins one: compiled, or checkpointing (a population writes no checkpoints)."""
        if self.training.compile or self.output.checkpoint_every or self.output.final_checkpoint:
            return None
        shared = self.model_dump(mode="json", exclude={"name", "description", "optimizer", "param_groups", "schedule",
                                                       "effect"})
        return json.dumps(shared, sort_keys=True)


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
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to read; a config is a few levels of sections and values") from None
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
        if part not in node and path[depth + 1].isdigit():
            raise ConfigError(f"{source}: override {'.'.join(path)}: {'.'.join(path[:depth + 1])} is not a list in this "
                              f"config, so it has no item {path[depth + 1]}; give the whole list, e.g. "
                              f"{'.'.join(path[:depth + 1])}='[{{...}}]'")
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
    if "base" in data and not set(data) & {"model", "data", "optimizer"}:
        raise ConfigError(f"{path}: this is a sweep file (it has `base`); run it with `optlab sweep {path}`")
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
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply to validate; a config is a few levels of sections and values") from None


KEY_ALIASES = {  # other codebases' names for optlab's keys (nanoGPT, Hugging Face), answered before spelling guesses
    "n_embd": "embedding_dim", "d_model": "embedding_dim", "hidden_size": "embedding_dim",
    "block_size": "context", "n_positions": "context", "max_seq_len": "context",
    "num_layers": "n_layer", "n_layers": "n_layer", "num_heads": "n_head", "n_heads": "n_head",
    "learning_rate": "lr", "max_iters": "steps", "grad_clip_norm": "grad_clip",
}


def describe_validation_error(error: ValidationError, source: str, schema: type[BaseModel] = ExperimentConfig) -> str:
    """One line: file, key path, what is wrong, and (for unknown keys and names) the closest valid one."""
    first = error.errors()[0]
    kind, context = first["type"], first.get("ctx", {})
    path_parts = readable_location(schema, first["loc"])
    message = first["msg"]
    if kind == "extra_forbidden":
        valid = valid_keys(schema, first["loc"][:-1])
        given = str(path_parts[-1])
        alias = KEY_ALIASES.get(given)
        guess = [alias] if alias in valid else difflib.get_close_matches(given, valid, n=1)
        message = f"unknown key; {f'did you mean `{guess[0]}`?' if guess else 'valid keys here: ' + ', '.join(valid)}"
    elif kind == "unknown_component":
        members = tagged_members(schema, first["loc"])
        names = [tag for tag in members if tag != PLUGIN]
        names += [name for name in entry_points(members[PLUGIN].group) if name not in names]
        given = first["input"].get("name") if isinstance(first["input"], dict) else first["input"]
        guess = difflib.get_close_matches(str(given), names, n=1) if isinstance(given, str) else []
        hint = f" (did you mean `{guess[0]}`?)" if guess else ""
        path_parts.append("name")
        message = (f"unknown name {given!r}{hint}; choose one of {', '.join(names)}, or an import path module:Class"
                   if given is not None else f"missing; choose one of {', '.join(names)}, or an import path module:Class")
    elif kind in ("unknown_keyword", "missing_keyword", "component_name", "field_value"):
        path_parts.append(context["key"])
    else:
        message = message.replace("Value error, ", "")
        if "input" in first and not isinstance(first["input"], (dict, list)):
            message = f"{message} (got {first['input']!r})"
    path = ".".join(str(part) for part in path_parts) or "(top level)"
    more = f" (and {len(error.errors()) - 1} more)" if len(error.errors()) > 1 else ""
    return f"{source}: {path}: {message}{more}"


def schema_of(annotation: Any) -> Any:
    """The model class behind an annotation, {tag: class} for a tagged union, or None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    arguments = typing.get_args(annotation)
    if typing.get_origin(annotation) is Annotated:
        return schema_of(arguments[0])
    tagged = {}
    for argument in arguments:
        tag = next((m.tag for m in getattr(argument, "__metadata__", ()) if isinstance(m, Tag)), None)
        if tag is not None:
            tagged[tag] = schema_of(typing.get_args(argument)[0])
            continue
        inner = schema_of(argument)
        if inner is not None:  # Optional[X], list[X], dict[str, X]
            return inner
    return tagged or None


def _walk(schema: type[BaseModel], loc: tuple) -> tuple[list, Any]:
    """Follow a pydantic error location down the schema: (the location without union tags, the schema
    reached: a class, {tag: class} at a tagged union, or None past the models)."""
    kept, current, at_key = [], schema, False
    for part in loc:
        if at_key:  # the key of a dict-valued field (a grid axis, a variant name): the value's schema follows
            kept.append(part)
            at_key = False
            continue
        if isinstance(current, dict):  # a tagged union: this part is the tag pydantic inserted
            if part in current:
                current = current[part]
                continue
            current = None
        kept.append(part)
        if isinstance(part, int) or current is None:
            continue
        field = current.model_fields.get(part) if isinstance(current, type) else None
        current = schema_of(field.annotation) if field is not None else None
        at_key = field is not None and _is_mapping(field.annotation)
    return kept, current


def _is_mapping(annotation: Any) -> bool:
    """dict[str, X] (also inside Optional)."""
    if typing.get_origin(annotation) is dict:
        return True
    return any(typing.get_origin(argument) is dict for argument in typing.get_args(annotation))


def readable_location(schema: type[BaseModel], loc: tuple) -> list:
    return _walk(schema, loc)[0]


def valid_keys(schema: type[BaseModel], loc: tuple) -> list[str]:
    """The field names valid at `loc` (a pydantic error location, union tags included)."""
    current = _walk(schema, loc)[1]
    return list(current.model_fields) if isinstance(current, type) else []


def tagged_members(schema: type[BaseModel], loc: tuple) -> dict[str, type]:
    """{tag (component name): schema} of the union at `loc`."""
    current = _walk(schema, loc)[1]
    return current if isinstance(current, dict) else {}


def config_differences(old: ExperimentConfig, new: ExperimentConfig) -> list[str]:
    """Dotted keys whose values differ between two resolved configs, e.g. ['optimizer.lr']."""

    def flatten(value, prefix=""):
        if isinstance(value, dict):
            return {k: v for key, item in value.items() for k, v in flatten(item, f"{prefix}{key}.").items()}
        return {prefix.rstrip("."): value}

    a, b = flatten(old.model_dump(mode="json")), flatten(new.model_dump(mode="json"))
    return sorted(key for key in a.keys() | b.keys() if a.get(key) != b.get(key))


def dump_config(config: ExperimentConfig) -> str:
    """The fully resolved config as YAML (what a run directory stores). libyaml's emitter when PyYAML has it
    (its wheels do): the same safe subset of YAML, written ~10× faster than the pure-Python one, which took
    a sixth of a tiny sweep trial."""
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(config.model_dump(mode="json"), Dumper=dumper, sort_keys=False, allow_unicode=True, width=100)
