"""Project exceptions: every user-facing failure is one of these, with a one-line message.

Also the one place that formats a pydantic validation error as that line
(``format_validation_error``), for scenarios and every settings model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "ConfigError",
    "DataError",
    "EdgeIntelError",
    "FieldError",
    "MissingExtraError",
    "ModelError",
    "TrainingError",
    "format_error",
    "format_validation_error",
    "loc_str",
]


class EdgeIntelError(Exception):
    """Base class; the CLI prints ``str(exc)`` as one line and exits with code 2."""


class ConfigError(EdgeIntelError, ValueError):
    """A scenario, recipe or config value is invalid (names the field and what is expected)."""


class DataError(EdgeIntelError, ValueError):
    """A dataset or data file cannot be used (names the file or dataset and the problem)."""


class ModelError(EdgeIntelError, ValueError):
    """A model, model factory or model file cannot be used."""


# --------------------------------------------------------------------------- formatting
# One place that turns pydantic validation errors into the one-line messages above.


class FieldError(ValueError):
    """Raised inside a validator to point at a precise field path below the model."""

    def __init__(self, loc: tuple[str | int, ...], msg: str) -> None:
        super().__init__(msg)
        self.loc = loc
        self.msg = msg


def loc_str(loc: tuple[Any, ...]) -> str:
    """``("devices", 0, "attach")`` -> ``devices[0].attach``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _unwrap(ann: Any) -> Any:
    """The BaseModel class inside Optional/list/dict annotations, if any."""
    from pydantic import BaseModel

    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in getattr(ann, "__args__", ()) or ():
        found = _unwrap(arg)
        if found is not None:
            return found
    return None


def _fields_at(root: Any, loc: tuple[Any, ...]) -> list[str] | None:
    """Field names of the model at ``loc`` inside ``root`` (for 'unknown field' hints)."""
    model: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(model, "model_fields", None)
        if fields is None:
            return None
        if part not in fields:
            # dict keys (e.g. device profile names) pass through to the value type
            ann = _unwrap(model)
            if ann is None:
                return None
            model = ann
            continue
        model = _unwrap(fields[part].annotation)
        if model is None:
            return None
    fields = getattr(model, "model_fields", None)
    return sorted(fields) if fields else None


def format_error(err: Mapping[str, Any], root: Any = None) -> str:
    """One pydantic error as ``field.path: what is expected``; ``root`` gives field hints."""
    loc = tuple(err["loc"])
    ctx = err.get("ctx") or {}
    inner = ctx.get("error")
    if isinstance(inner, FieldError):
        return f"{loc_str(loc + inner.loc)}: {inner.msg}"
    if err["type"] == "extra_forbidden":
        allowed = _fields_at(root, loc[:-1]) if root is not None else None
        hint = f"; expected one of: {', '.join(allowed)}" if allowed else ""
        return f"{loc_str(loc)}: unknown field{hint}"
    if err["type"] == "missing":
        return f"{loc_str(loc)}: required field is missing"
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    msg = msg[0].lower() + msg[1:]
    if (
        err["type"] != "value_error"
        and "input" in err
        and not isinstance(err["input"], dict | list)
    ):
        msg += f", got {err['input']!r}"
    return f"{loc_str(loc)}: {msg}"


def format_validation_error(exc: Any, source: str, root: Any = None) -> ConfigError:
    """A ConfigError ``source: first problem (and N more problems)`` from a ValidationError."""
    errors = exc.errors()
    first = format_error(dict(errors[0]), root)
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return ConfigError(f"{source}: {first}{more if len(errors) > 1 else ''}")


class TrainingError(EdgeIntelError, RuntimeError):
    """Training diverged: a loss or the model's weights became NaN or infinite."""


class MissingExtraError(EdgeIntelError, ImportError):
    """An optional dependency group is not installed; the message names the pip extra."""
