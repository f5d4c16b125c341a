"""Sweep grids: axes (policies, fleet sizes, bandwidths, any scenario or simulator field)
and seeds, read from a grid file and bounded before anything is expanded.

A grid file is YAML; its aliases are expanded with a bound (``MAX_GRID_VALUES`` values in
all: a "billion laughs" file is one line, not gigabytes), and the product of the axes
and seeds is at most ``MAX_GRID_POINTS`` points. The simulator's own settings are axes by
their name (``duration_s``); ``settings.sim.X`` is refused (the sweep takes each point's
simulator settings from those axes, so a scenario path there would be silently ignored).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from edgeintel.errors import ConfigError
from edgeintel.schema import short_repr

__all__ = [
    "ALIASES",
    "MAX_GRID_POINTS",
    "MAX_GRID_VALUES",
    "POLICY_CHOICES",
    "Grid",
    "axis_kind",
    "is_scenario_axis",
    "load_grid",
    "set_path",
]

MAX_GRID_POINTS = 100_000
"""Points (axis combinations x seeds) one sweep may have."""
MAX_GRID_VALUES = 100_000
"""Values a grid file may expand to (its YAML aliases expanded)."""

ALIASES: dict[str, str] = {
    "bandwidth_mbps": "devices.*.link.bandwidth_mbps",
    "rtt_ms": "devices.*.link.rtt_ms",
    "loss": "devices.*.link.loss",
}
"""Short axis names for scenario paths (``*`` = every item of a list)."""

POLICY_CHOICES = ("planner", "local", "edge", "cloud")
"""Values of the ``policy`` axis: the runtime's planner policy (``PlannerPolicy``: the
registered placement's plan + ``AdaptivePolicy``) or a fixed slot (``FixedPolicy``)."""


@dataclass(frozen=True)
class Grid:
    """Axes (name -> values, in order) and seeds; the sweep runs their product.

    An axis name is a scenario path when it contains a dot or is an alias
    (``bandwidth_mbps`` = ``devices.*.link.bandwidth_mbps``), else a field of the
    simulator's settings (``policy``, ``devices``, ``duration_s``...).
    """

    axes: Mapping[str, tuple[Any, ...]]
    seeds: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        if not self.axes:
            raise ConfigError("grid: axes must name at least one axis with a list of values")
        for name, values in self.axes.items():
            if not isinstance(name, str) or not name or name == "seed":
                raise ConfigError(
                    f"grid: axes: {short_repr(name)} is not an axis name (seed goes in seeds)"
                )
            if name.startswith("settings.sim."):
                raise ConfigError(
                    f"grid: axes: {short_repr(name)}: the simulator's settings are axes by their "
                    f"own name; use {short_repr(name.removeprefix('settings.sim.'))}"
                )
            if not isinstance(values, tuple) or not values:
                raise ConfigError(f"grid: axes.{name}: expected a non-empty list of values")
            if len(set(map(repr, values))) != len(values):
                raise ConfigError(f"grid: axes.{name}: values repeat ({short_repr(list(values))})")
        if not self.seeds:
            raise ConfigError("grid: seeds: expected a non-empty list of integers")
        for s in self.seeds:
            if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < 2**32:
                raise ConfigError(
                    f"grid: seeds: expected integers in [0, 2**32), got {short_repr(s)}"
                )
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"grid: seeds: values repeat ({short_repr(list(self.seeds))})")
        sizes = [len(v) for v in self.axes.values()] + [len(self.seeds)]
        if math.prod(sizes) > MAX_GRID_POINTS:
            raise ConfigError(
                f"grid: {math.prod(sizes):.3g} points ({' x '.join(map(str, sizes))}, the last "
                f"the seeds); at most {MAX_GRID_POINTS} points: split the sweep"
            )

    @classmethod
    def from_mapping(cls, raw: Any, source: str = "grid") -> Grid:
        """From ``{"axes": {name: [values]}, "seeds": [ints]}`` (a grid file's content)."""
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: expected a mapping with 'axes' and 'seeds'")
        unknown = sorted(set(raw) - {"axes", "seeds"})
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {unknown}; expected 'axes' and 'seeds'")
        axes = raw.get("axes")
        if not isinstance(axes, dict):
            raise ConfigError(f"{source}: axes: expected a mapping of axis name -> list of values")
        out: dict[str, tuple[Any, ...]] = {}
        for name, values in axes.items():
            if not isinstance(values, list):
                raise ConfigError(f"{source}: axes.{name}: expected a list of values")
            out[str(name)] = tuple(values)
        seeds = raw.get("seeds", [0])
        if not isinstance(seeds, list):
            raise ConfigError(f"{source}: seeds: expected a list of integers")
        try:
            return cls(out, tuple(seeds))
        except ConfigError as exc:
            raise ConfigError(str(exc).replace("grid:", f"{source}:", 1)) from None

    def points(self) -> list[dict[str, Any]]:
        """Every combination, the first axis slowest and the seed fastest."""
        names = list(self.axes)
        return [
            {**dict(zip(names, combo, strict=True)), "seed": seed}
            for combo in itertools.product(*self.axes.values())
            for seed in self.seeds
        ]

    def to_json(self) -> dict[str, Any]:
        return {"axes": {k: list(v) for k, v in self.axes.items()}, "seeds": list(self.seeds)}


def load_grid(path: str | Path) -> Grid:
    """Read a grid YAML file; one-line ``ConfigError`` naming the file when it is wrong."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"grid file not found: {p}")
    from edgeintel.schema import load_yaml

    try:
        text = p.read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        values = _expanded_size(node, {})
        if values > MAX_GRID_VALUES:
            raise ConfigError(
                f"{p}: the grid expands to {values:.3g} values (its YAML aliases expanded); "
                f"at most {MAX_GRID_VALUES}"
            )
        raw = load_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({str(exc).splitlines()[0][:200]})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a UTF-8 text file") from None
    return Grid.from_mapping(raw, source=str(p))


def _expanded_size(node: Any, memo: dict[int, int]) -> int:
    """Nodes of a composed YAML tree with every alias expanded, counted without expanding
    (an aliased node's size is computed once)."""
    if node is None:
        return 0
    key = id(node)
    if key not in memo:
        memo[key] = 0  # a recursive alias counts once
        if isinstance(node, yaml.SequenceNode):
            size = 1 + sum(_expanded_size(n, memo) for n in node.value)
        elif isinstance(node, yaml.MappingNode):
            size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
        else:
            size = 1
        memo[key] = size
    return memo[key]


def is_scenario_axis(name: str) -> bool:
    """Whether an axis changes the scenario (a dotted path or an alias)."""
    return name in ALIASES or "." in name


def set_path(raw: dict[str, Any], path: str, value: Any) -> None:
    """Set ``path`` (dots; ``*`` = every item of a list) in a scenario mapping, in place.

    Raises ``ConfigError`` naming the path when a step does not exist (a typo must
    not silently create a field the sweep then ignores).
    """
    parts = ALIASES.get(path, path).split(".")

    def walk(node: Any, i: int, where: str) -> None:
        part = parts[i]
        last = i == len(parts) - 1
        here = f"{where}.{part}" if where else part
        if part == "*":
            if not isinstance(node, list):
                raise ConfigError(f"grid axis {path}: {where or 'scenario'} is not a list")
            for k in range(len(node)):
                if last:
                    node[k] = value
                else:
                    walk(node[k], i + 1, f"{where}.{k}")
            return
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"grid axis {path}: {here} must be a list index < {len(node)}")
            key: Any = int(part)
        elif isinstance(node, dict):
            key = part
            if not last and key not in node:
                node[key] = {}  # an optional block left at its default (validation names it)
        else:
            raise ConfigError(f"grid axis {path}: {where} is a value, not a mapping or list")
        if last:
            node[key] = value
        else:
            walk(node[key], i + 1, here)

    walk(raw, 0, "")


_SCENARIO_FIELDS = frozenset(
    {"name", "description", "seed", "task", "data", "cloud", "edge_servers",
     "device_profiles", "devices", "links", "settings"}
)  # fmt: skip


def axis_kind(name: str, sim_fields: Iterable[str]) -> str:
    """``policy``, ``scenario`` (a path in the scenario) or ``sim`` (a ``SimSettings`` path)."""
    head = name.split(".")[0]
    if name == "policy":
        return "policy"
    if name in ALIASES or ("." in name and head in _SCENARIO_FIELDS):
        return "scenario"
    if head in set(sim_fields):
        return "sim"
    raise ConfigError(
        f"grid axis {name!r}: not a simulator setting ({', '.join(sorted(sim_fields))}), "
        f"an alias ({', '.join(ALIASES)}), policy, or a scenario path such as "
        "devices.0.count or settings.offloading.hysteresis"
    )
