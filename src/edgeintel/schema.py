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
import re
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
    "MAX_MAGNITUDE",
    "Bytes",
    "Count",
    "Fraction",
    "NodeName",
    "NonNegative",
    "Positive",
    "Strict",
    "load_yaml",
    "registry_name",
    "resolve_file",
    "resolve_folder",
    "resolve_path",
    "short_repr",
]

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
NodeName = Annotated[str, Field(pattern=_NAME, min_length=1, max_length=64)]
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]


MAX_MAGNITUDE = 1e15
"""No number in a scenario is larger than this in magnitude (a petabyte in bytes, 31
years in ms): larger values are typos or attacks that end as overflows or huge
allocations. Fields that are sizes have tighter bounds of their own."""


Count = Annotated[int, Field(ge=1, le=10**9)]
"""A number of things a user controls (items, requests, entries): 1 .. 10**9."""
Bytes = Annotated[int, Field(ge=0, le=2**40)]
"""A size in bytes: 0 .. 1 TiB."""


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


def _has_upper_bound(metadata: list[Any]) -> bool:
    """Whether a field's constraints include an upper bound of its own (``le``/``lt``),
    whose message then names the real limit instead of ``MAX_MAGNITUDE``."""
    return any(getattr(m, "le", None) is not None or getattr(m, "lt", None) is not None
               for m in metadata)  # fmt: skip


def _check_scalar(kind: type, value: Any, capped: bool = True) -> None:
    """Raise ``ValueError`` unless ``value`` is exactly a ``kind`` (see ``Strict``); with
    ``capped``, also when its magnitude exceeds ``MAX_MAGNITUDE``."""
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {short_repr(value)}")
        if capped and abs(value) > MAX_MAGNITUDE:
            raise ValueError(f"expected an integer of at most {MAX_MAGNITUDE:.0e}, got {value:.3g}")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected a number, got {short_repr(value)}")
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {value}")
        if capped and abs(value) > MAX_MAGNITUDE:
            raise ValueError(f"expected a number of at most {MAX_MAGNITUDE:.0e}, got {value:.3g}")


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters (a message stays one short line)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Strict(BaseModel):
    """The one base of every settings model reachable from a scenario.

    Frozen, unknown fields are errors (a typo never passes silently), and numbers are
    what they claim: no ``inf``/``nan`` in any float, no quoted number (``"4e4"``) or
    boolean for a number, integers only for integer fields (``true``, ``2.5`` or ``"3"``
    are not counts), only ``true``/``false`` for booleans, and no magnitude above
    ``MAX_MAGNITUDE`` -- in scalar fields and in the items of list, tuple and dict fields
    alike (``shape: [true, 28]`` is refused)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _exact_scalars(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if field is None or value is None:
            return value
        kind = _scalar_kind(field.annotation)
        if kind is not None:
            _check_scalar(kind, value, capped=not _has_upper_bound(field.metadata))
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


# YAML 1.2 reads ``4e4`` and ``1e30`` as numbers; PyYAML (YAML 1.1) reads them as strings,
# which a number field must refuse (only a quoted "4e4" is a string).
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` that refuses duplicate keys (raises ``yaml.YAMLError``) and reads
    ``4e4`` as a number (YAML 1.2), not a string."""
    return yaml.load(text, Loader=_UniqueKeyLoader)


def resolve_path(value: Path | None, info: ValidationInfo) -> Path | None:
    """An input that may be a file or a folder (``data.path``: a file or an image folder):
    relative to the scenario file's folder (absolute paths as given), and it must exist."""
    if value is None:
        return None
    base = (info.context or {}).get("base_dir")
    path = value if value.is_absolute() or base is None else Path(base) / value
    if not path.exists():
        raise ValueError(f"file not found: {path}")
    return path


def resolve_file(value: Path | None, info: ValidationInfo) -> Path | None:
    """The one way a scenario names an input file: as ``resolve_path``, and it must be a
    file (a folder is refused)."""
    path = resolve_path(value, info)
    if path is not None and not path.is_file():
        raise ValueError(f"{path} is not a file")
    return path


def resolve_folder(value: Path | None, info: ValidationInfo) -> Path | None:
    """The one way a scenario names an output folder: a relative folder resolves against
    the scenario file's folder and must stay inside it (a downloaded scenario cannot make
    a run write elsewhere through ``..`` or a symbolic link); an absolute path is the
    user's explicit choice."""
    if value is None:
        return None
    base = (info.context or {}).get("base_dir")
    if value.is_absolute() or base is None:
        return value
    root = Path(base).resolve()
    path = (root / value).resolve()
    if not path.is_relative_to(root):
        raise ValueError(
            f"{value} resolves to {path}, outside the scenario's folder {root}; give a "
            "folder inside it, or an absolute path"
        )
    return path


def registry_name(
    registry: Registry[Any], also: tuple[str, ...] = (), without: tuple[str, ...] = ()
) -> AfterValidator:
    """Validator for ``Annotated[str, registry_name(REG)]``: the name must be in ``REG``
    (or in ``also``, e.g. ``auto``; never in ``without``, entries a field cannot use).

    The check runs when a model is validated, not when it is defined, so names
    registered after import (a user's own rule) are accepted.
    """

    def check(value: str) -> str:
        if value in also:
            return value
        if not also and not without:
            registry.check(value)  # ConfigError (a ValueError) listing the registry's names
            return value
        if value not in registry or value in without:
            known = [*also, *(n for n in registry.names() if n not in without)]
            raise ValueError(
                f"unknown {registry.kind} {short_repr(value)}; expected one of: {', '.join(known)}"
            )
        return value

    check.registry = registry  # type: ignore[attr-defined]  # (the conformance test reads it)
    return AfterValidator(check)
