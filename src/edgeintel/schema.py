"""Building blocks of every settings model: a strict frozen base, unit-bearing number
types, relative file paths, and names checked against a registry.

Each component defines its own settings model from these (``training/settings.py``,
``inference/settings.py``, ...); ``scenario.py`` composes them. A field that names a
registered thing (an aggregation rule, an attack, a partitioner, ...) is a
``RegistryName``: any name in the registry *at validation time* is accepted, so a
rule a user registers can be named in a scenario, and a wrong name is rejected with
the registry's names in the message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo

from edgeintel.registry import Registry

__all__ = [
    "Fraction",
    "NodeName",
    "NonNegative",
    "Positive",
    "Strict",
    "registry_name",
    "resolve_file",
]

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
NodeName = Annotated[str, Field(pattern=_NAME, min_length=1, max_length=64)]
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]


class Strict(BaseModel):
    """Frozen, and unknown fields are errors (a typo never passes silently)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def resolve_file(value: Path | None, info: ValidationInfo) -> Path | None:
    """Resolve a path relative to the scenario file's folder and check it exists."""
    if value is None:
        return None
    base = (info.context or {}).get("base_dir")
    path = value if value.is_absolute() or base is None else Path(base) / value
    if not path.exists():
        raise ValueError(f"file not found: {path}")
    return path


def registry_name(registry: Registry[Any]) -> AfterValidator:
    """Validator for ``Annotated[str, registry_name(REG)]``: the name must be in ``REG``.

    The check runs when a model is validated, not when it is defined, so names
    registered after import (a user's own rule) are accepted.
    """

    def check(value: str) -> str:
        registry.get(value)  # ConfigError (a ValueError) listing the registry's names
        return value

    return AfterValidator(check)
