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

import math
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from edgeintel.registry import Registry

__all__ = [
    "Fraction",
    "NodeName",
    "NonNegative",
    "Positive",
    "Strict",
    "load_yaml",
    "registry_name",
    "resolve_file",
]

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
NodeName = Annotated[str, Field(pattern=_NAME, min_length=1, max_length=64)]
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]


_FLOAT32_MAX = 3.4028234663852886e38


def _scalar_kind(annotation: Any) -> type | None:
    """``int``, ``float`` or ``bool`` when a field's annotation is that scalar (possibly
    inside ``Annotated`` or ``X | None``); ``None`` for anything else."""
    if annotation in (bool, int, float):
        return annotation  # type: ignore[no-any-return]
    origin = get_origin(annotation)
    if origin is Annotated:
        return _scalar_kind(get_args(annotation)[0])
    if origin in (Union, UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _scalar_kind(args[0])
    return None


def _item_kind(annotation: Any) -> type | None:
    """The scalar kind of the items of a ``list``/``tuple``/``set`` (or the values of a
    ``dict``) field, possibly ``X | None``; ``None`` for anything else."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _item_kind(get_args(annotation)[0])
    if origin in (Union, UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return _item_kind(args[0]) if len(args) == 1 else None
    if origin in (list, tuple, set, frozenset):
        args = [a for a in get_args(annotation) if a is not Ellipsis]
        kinds = {_scalar_kind(a) for a in args}
        return kinds.pop() if len(kinds) == 1 else None
    if origin is dict:
        kv = get_args(annotation)
        return _scalar_kind(kv[1]) if len(kv) == 2 else None
    return None


def _check_scalar(kind: type, value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` is exactly a ``kind`` (see ``Strict``)."""
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {value!r}")
        if abs(value) >= 2**63:
            raise ValueError(f"expected an integer below 2**63, got {value}")
    elif kind is float:
        if isinstance(value, bool):
            raise ValueError(f"expected a number, got {value!r}")
        finite = isinstance(value, int | float) and math.isfinite(value)
        if finite and abs(value) > _FLOAT32_MAX:
            raise ValueError(f"expected a number within float32 range, got {value:g}")


class Strict(BaseModel):
    """Frozen, unknown fields are errors (a typo never passes silently), and numbers are
    what they claim: no ``inf``/``nan`` in any float, floats within float32's range (they
    reach torch), integers only for integer fields (``true``, ``2.5`` or ``"3"`` are not
    counts) and only ``true``/``false`` for booleans -- in scalar fields and in the items
    of list, tuple and dict fields alike (``shape: [true, 28]`` is refused)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _exact_scalars(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if field is None or value is None:
            return value
        kind = _scalar_kind(field.annotation)
        if kind is not None:
            _check_scalar(kind, value)
            return value
        item = _item_kind(field.annotation)
        if item is not None:
            pairs: Any = (
                value.items()
                if isinstance(value, dict)
                else enumerate(value)
                if isinstance(value, list | tuple)
                else ()
            )
            for key, v in pairs:
                if v is None:
                    continue
                try:
                    _check_scalar(item, v)
                except ValueError as exc:
                    raise ValueError(f"[{key}]: {exc}") from None
        return value


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error
    (plain PyYAML keeps the last value silently)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: the base class reports it
                    break
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"duplicate key {key!r}",
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` that refuses duplicate keys (raises ``yaml.YAMLError``)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)


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
        registry.check(value)  # ConfigError (a ValueError) listing the registry's names
        return value

    return AfterValidator(check)
