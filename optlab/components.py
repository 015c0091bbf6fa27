"""The one registry of pluggable components: optimizers, models and datasets (effects: optlab/effects).

A config names a component in its `name` field in one of three ways:

- a built-in name (`tiger`, `gpt`, `zipf`): its schema, a pydantic model, lives in the kind's torch-free
  schema module (optlab/optim/schema.py, optlab/models/schema.py, optlab/data/schema.py) and names its
  implementation by import path (`component`);
- an import path `package.module:Attribute` to a class or factory of the user's own;
- a name an installed package registers under the entry-point group `optlab.optimizers`, `optlab.models`
  or `optlab.datasets` (the entry point's value is an import path, as above).

Imported components are validated against their constructor's signature: every keyword must be a
parameter (did-you-mean otherwise), every parameter without a default must be given, and the defaults
are filled in so that the resolved config records what ran. The constructor protocols, one per kind:

    optimizer:  factory(params, **keywords) -> torch.optim.Optimizer
    model:      factory(dataset, **keywords) -> nn.Module with forward(batch) -> loss   (optlab/models)
    dataset:    factory(seed, **keywords) -> object with sample(batch_size, length, split)   (optlab/data)
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import json
from importlib import metadata
from typing import Annotated, Any, Callable, ClassVar, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Tag, model_validator
from pydantic_core import PydanticCustomError

from optlab.fields import Strict

PLUGIN = "plugin"  # the union tag of every component named by import path or entry point


@functools.lru_cache(maxsize=None)
def entry_points(group: str) -> dict[str, str]:
    """{name: import path} of the entry points installed packages register under `group`."""
    return {point.name: point.value for point in metadata.entry_points(group=group)}


def is_import_path(name: str) -> bool:
    return ":" in name


@functools.lru_cache(maxsize=None)
def resolve(name: str, group: str) -> Any:
    """The object an import path or entry-point name points to. Raises ValueError with one line."""
    path = entry_points(group).get(name, name)
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # ImportError, or whatever the user's module raised while importing
        raise ValueError(f"cannot import {module_name!r} ({type(error).__name__}: {error}); give an importable "
                         "module:Attribute") from None
    try:
        return functools.reduce(getattr, attribute.split("."), module)
    except AttributeError:
        raise ValueError(f"module {module_name!r} has no attribute {attribute!r}") from None


def keyword_parameters(factory: Callable, leading: int) -> tuple[dict[str, inspect.Parameter], bool]:
    """The keyword parameters of `factory` after its `leading` positional ones (params, dataset, seed),
    and whether it also takes **kwargs."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    parameters = list(inspect.signature(target).parameters.values())
    if inspect.isclass(factory):
        parameters = parameters[1:]  # self
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    named = [p for p in parameters if p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)]
    return {p.name: p for p in named[leading:]}, accepts_any


def _json_default(parameter: inspect.Parameter) -> tuple[bool, Any]:
    """(usable, value): a default that YAML can record (numbers, strings, booleans, lists, None)."""
    value = parameter.default
    if isinstance(value, tuple):
        value = list(value)
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False, None
    return True, value


class BuiltinComponent(Strict):
    """The schema of a built-in component: its fields are the constructor's keywords (`keywords()`),
    `component` the import path of its implementation, `group` the entry-point group of its kind."""

    component: ClassVar[str]
    group: ClassVar[str]
    not_keywords: ClassVar[frozenset[str]] = frozenset({"name"})

    def keywords(self) -> dict[str, Any]:
        return self.model_dump(exclude=set(self.not_keywords))

    def factory(self) -> Callable:
        return resolve(self.component, self.group)


class PluginComponent(BaseModel):
    """A component named by import path or entry point; its other keys are its constructor's keywords.

    Subclasses name the kind (`group`, the entry-point group), the number of leading positional
    arguments the protocol passes (`leading`) and check what the target is (`check_target`)."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)
    name: str
    group: ClassVar[str]
    leading: ClassVar[int]

    @classmethod
    def check_target(cls, target: Any) -> str | None:
        """Why `target` cannot be this kind of component (None: it can)."""
        return None if callable(target) else "is not callable"

    @model_validator(mode="after")
    def _against_the_signature(self):
        try:
            target = resolve(self.name, self.group)
        except ValueError as error:
            raise PydanticCustomError("component_name", "{problem}", {"key": "name", "problem": str(error)}) from None
        problem = self.check_target(target)
        if problem:
            raise PydanticCustomError("component_name", "{problem}", {"key": "name", "problem": f"{self.name} {problem}"})
        parameters, accepts_any = keyword_parameters(target, self.leading)
        given = dict(self.model_extra or {})
        for key in given:
            if key not in parameters and not accepts_any:
                guess = difflib.get_close_matches(key, list(parameters), n=1)
                hint = f"did you mean `{guess[0]}`?" if guess else f"its keywords are {', '.join(parameters) or 'none'}"
                raise PydanticCustomError("unknown_keyword", "unknown key for {target}; {hint}",
                                          {"key": key, "target": self.name, "hint": hint})
        for key, parameter in parameters.items():
            if key in given:
                continue
            if parameter.default is inspect.Parameter.empty:
                raise PydanticCustomError("missing_keyword", "missing: {target} has no default for it",
                                          {"key": key, "target": self.name})
            usable, value = _json_default(parameter)
            if usable:
                setattr(self, key, value)
        return self

    def factory(self) -> Callable:
        return resolve(self.name, self.group)

    def keywords(self) -> dict:
        return dict(self.model_extra or {})


def component_union(builtins: tuple[type[BaseModel], ...], plugin: type[PluginComponent]) -> Any:
    """A tagged union over the built-in schemas (tag: their `name`) and the plugin schema (tag: PLUGIN)
    for import paths and entry-point names. Unknown names fail with `unknown_component`."""
    names = {model.model_fields["name"].default: model for model in builtins}

    def tag(value: Any) -> str | None:
        name = value.get("name") if isinstance(value, dict) else getattr(value, "name", None)
        if not isinstance(name, str):
            return None
        if name in names:
            return name
        return PLUGIN if is_import_path(name) or name in entry_points(plugin.group) else None

    members = [Annotated[model, Tag(name)] for name, model in names.items()] + [Annotated[plugin, Tag(PLUGIN)]]
    return Annotated[Union[tuple(members)], Discriminator(tag, custom_error_type="unknown_component",
                                                          custom_error_message="unknown component name")]

