"""The project's exceptions, in one tree, and the one formatter of validation errors.

Every failure edgeintel raises on purpose is an ``EdgeIntelError`` with a one-line
message naming the field, file or node at fault; the CLI prints it and exits with
code 2. The tree::

    EdgeIntelError
    ├── ConfigError (ValueError)      a scenario, recipe, option or settings value
    │   └── BudgetError               no compression candidate meets a device's budget
    ├── DataError (ValueError)        a dataset or data file
    ├── ModelError (ValueError)       a model, model factory or model file
    ├── TrainingError (RuntimeError)  training diverged (NaN or infinite loss or weights)
    ├── MissingExtraError (ImportError)  an optional dependency group is not installed
    └── the running system (runtime/):
        ├── ProtocolError (ValueError)   a request that breaks the inference protocol (400)
        ├── QueueFull                    a model's batching queue is at capacity (503)
        ├── StoreFull                    a device store at max_records under reject_new
        ├── StoreCorrupt                 an encrypted store's record fails authentication
        └── TransportError               a request got no response
            └── LinkDown                 the emulated link is in an outage

Components raise these and re-export the runtime ones where they are used
(``edgeintel.runtime.batching.QueueFull`` is this ``QueueFull``). ``FieldError`` is
not in the tree: a validator raises it inside pydantic to point at a field, and
``format_validation_error`` turns the result into a ``ConfigError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgeintel.inference.search import SearchResult

__all__ = [
    "BudgetError",
    "ConfigError",
    "DataError",
    "EdgeIntelError",
    "FieldError",
    "LinkDown",
    "MissingExtraError",
    "ModelError",
    "ProtocolError",
    "QueueFull",
    "StoreCorrupt",
    "StoreFull",
    "TrainingError",
    "TransportError",
    "format_error",
    "format_validation_error",
    "loc_str",
]


class EdgeIntelError(Exception):
    """Base class; the CLI prints ``str(exc)`` as one line and exits with code 2."""


class ConfigError(EdgeIntelError, ValueError):
    """A scenario, recipe or config value is invalid (names the field and what is expected)."""


class BudgetError(ConfigError):
    """No candidate meets the budget; ``search`` holds every measured candidate."""

    def __init__(self, message: str, search: SearchResult) -> None:
        super().__init__(message)
        self.search = search


class DataError(EdgeIntelError, ValueError):
    """A dataset or data file cannot be used (names the file or dataset and the problem)."""


class ModelError(EdgeIntelError, ValueError):
    """A model, model factory or model file cannot be used."""


class TrainingError(EdgeIntelError, RuntimeError):
    """Training diverged: a loss or the model's weights became NaN or infinite."""


class MissingExtraError(EdgeIntelError, ImportError):
    """An optional dependency group is not installed; the message names the pip extra."""


# --------------------------------------------------------------------------- the runtime


class ProtocolError(EdgeIntelError, ValueError):
    """A request that does not follow the protocol; the message names the field."""


class QueueFull(EdgeIntelError):
    """The model's request queue is at capacity."""


class StoreFull(EdgeIntelError):
    """The store is at ``max_records`` and its policy is ``reject_new``."""


class StoreCorrupt(EdgeIntelError):
    """An encrypted store's record or key check fails authentication (tampered with, or
    another key); nothing is deleted."""


class TransportError(EdgeIntelError):
    """The request did not get a response: unreachable, timed out, lost or link down."""


class LinkDown(TransportError):
    """The emulated link is in an outage (its trace has bandwidth 0 now)."""


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
