"""Building blocks of every config schema: the strict base model and the constrained number types.

Torch-free, like every schema module, so that `optlab validate` and `optlab --help` stay fast.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Beta = Annotated[float, Field(ge=0, lt=1)]
Fraction = Annotated[float, Field(ge=0, le=1)]


def _relative_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*", name) or ".." in name:
        raise ValueError("use letters, digits, '_', '-', '.' in '/'-separated parts, without '..' (runs stay inside runs_dir)")
    return name


RunName = Annotated[str, AfterValidator(_relative_name)]  # a folder below runs_dir: never absolute, never '..'


def field_error(key: str, problem: str) -> PydanticCustomError:
    """A schema's cross-field check failing on `key`: reported as `section.key: problem` (optlab/config.py)."""
    return PydanticCustomError("field_value", "{problem}", {"key": key, "problem": problem})


class Strict(BaseModel):
    """Base of every section: unknown keys are errors, assignments are validated, and no number is
    nan or ±inf (a learning rate or an eps of inf validates but trains nothing: no field means it)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
