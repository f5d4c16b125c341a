"""Recipes: an ordered list of compression steps, from YAML/JSON or Python.

```yaml
name: distill-prune-int8
steps:
  - distill: {student: image_dscnn, epochs: 5}
  - prune_structured: {ratio: 0.5}
  - quantize_static: {calibration: entropy}
```

A step is a technique name (default options) or a one-key mapping of the name
to its options. Torch steps run first; at most one ONNX step (quantization)
may follow, as the last step. An empty recipe is the fp32 baseline.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from edgeintel.errors import ConfigError
from edgeintel.inference.base import TECHNIQUES, StageKind
from edgeintel.schema import load_yaml

__all__ = ["Recipe", "RecipeStep", "load_recipe", "make_recipe", "parse_recipe"]


def _jsonable(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class RecipeStep:
    """One technique with its validated config."""

    technique: str
    config: Any

    @property
    def kind(self) -> StageKind:
        return TECHNIQUES.get(self.technique).kind

    def options(self) -> dict[str, Any]:
        return {k: _jsonable(v) for k, v in dataclasses.asdict(self.config).items()}

    def to_json(self) -> dict[str, Any]:
        return {self.technique: self.options()}

    def label(self) -> str:
        """Short label: technique and its headline knob, e.g. ``prune_structured(0.5)``."""
        opts = self.options()
        for key in ("ratio", "energy", "param_ratio", "calibration", "student"):
            if opts.get(key) is not None:
                return f"{self.technique}({opts[key]})"
        return self.technique

    @classmethod
    def make(cls, technique: str, options: dict[str, Any] | None = None) -> RecipeStep:
        spec = TECHNIQUES.get(technique)
        return cls(technique, spec.make_config(options))


@dataclass(frozen=True)
class Recipe:
    """A named, ordered tuple of steps; validated so ONNX steps come last (at most one)."""

    name: str
    steps: tuple[RecipeStep, ...] = ()

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("recipe.name must be a non-empty string")
        onnx_steps = [i for i, s in enumerate(self.steps) if s.kind == StageKind.ONNX]
        if len(onnx_steps) > 1:
            raise ConfigError(
                f"recipe {self.name!r}: steps[{onnx_steps[1]}] "
                f"({self.steps[onnx_steps[1]].technique}): only one ONNX step (quantization) "
                "is allowed"
            )
        if onnx_steps and onnx_steps[0] != len(self.steps) - 1:
            i = onnx_steps[0]
            raise ConfigError(
                f"recipe {self.name!r}: steps[{i + 1}] ({self.steps[i + 1].technique}) works on "
                f"the PyTorch model and cannot follow {self.steps[i].technique}; "
                "put quantization last"
            )

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "steps": [s.to_json() for s in self.steps]}

    def label(self) -> str:
        return " -> ".join(s.label() for s in self.steps) or "fp32"

    @property
    def torch_steps(self) -> tuple[RecipeStep, ...]:
        return tuple(s for s in self.steps if s.kind == StageKind.TORCH)


def make_recipe(name: str, steps: list[Any]) -> Recipe:
    """Python API: ``make_recipe("p50q", ["prune_structured", ("quantize_static", {...})])``."""
    out = []
    opts: Any
    for i, step in enumerate(steps):
        if isinstance(step, RecipeStep):
            out.append(step)
            continue
        if isinstance(step, str):
            tech, opts = step, {}
        elif isinstance(step, tuple) and len(step) == 2:
            tech, opts = step
        elif isinstance(step, dict) and len(step) == 1:
            tech, opts = next(iter(step.items()))
        else:
            raise ConfigError(
                f"recipe {name!r}: steps[{i}] must be a technique name or a one-key mapping "
                f"name -> options, got {step!r}"
            )
        if opts is None:
            opts = {}
        if not isinstance(opts, dict):
            raise ConfigError(f"recipe {name!r}: steps[{i}].{tech}: options must be a mapping")
        try:
            out.append(RecipeStep.make(str(tech), opts))
        except ConfigError as exc:
            raise ConfigError(f"recipe {name!r}: steps[{i}]: {exc}") from None
    return Recipe(name, tuple(out))


def parse_recipe(raw: Any, source: str = "recipe") -> Recipe:
    """Validate a recipe mapping ``{name, steps}``."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping with 'name' and 'steps'")
    unknown = sorted(set(raw) - {"name", "steps"})
    if unknown:
        raise ConfigError(f"{source}: unknown field {unknown[0]!r}; expected one of: name, steps")
    steps = raw.get("steps", [])
    if not isinstance(steps, list):
        raise ConfigError(f"{source}: steps must be a list")
    try:
        return make_recipe(str(raw.get("name") or Path(source).stem), steps)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_recipe(path: str | Path) -> Recipe:
    """Read a recipe from a YAML or JSON file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"recipe file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
        raw = json.loads(text) if p.suffix == ".json" else load_yaml(text)
    except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: not a valid recipe file ({exc.__class__.__name__})") from None
    return parse_recipe(raw, source=str(p))
