"""Project exceptions: every user-facing failure is one of these, with a one-line message."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataError",
    "EdgeIntelError",
    "MissingExtraError",
    "ModelError",
    "TrainingError",
]


class EdgeIntelError(Exception):
    """Base class; the CLI prints ``str(exc)`` as one line and exits with code 2."""


class ConfigError(EdgeIntelError, ValueError):
    """A scenario, recipe or config value is invalid (names the field and what is expected)."""


class DataError(EdgeIntelError, ValueError):
    """A dataset or data file cannot be used (names the file or dataset and the problem)."""


class ModelError(EdgeIntelError, ValueError):
    """A model, model factory or model file cannot be used."""


class TrainingError(EdgeIntelError, RuntimeError):
    """Training diverged: a loss or the model's weights became NaN or infinite."""


class MissingExtraError(EdgeIntelError, ImportError):
    """An optional dependency group is not installed; the message names the pip extra."""
