"""Parameter sweeps: one simulation per grid point, in parallel processes or on Ray.

A grid names axes (policies, fleet sizes, bandwidths, any scenario or
simulator field) and seeds; every combination is one *point*. The points are
validated in the calling process first (a wrong field name or value is one
line before any compute is spent), then run

* in-process when ``workers == 1``,
* in a ``ProcessPoolExecutor`` of ``workers`` processes (``spawn``; numpy/BLAS,
  OpenMP, torch and ONNX Runtime pinned to one thread per process, so ``N``
  workers use ``N`` cores and no more), or
* on a Ray cluster when ``ray_address`` is given (``auto``, ``host:port`` or
  ``local`` to start a private one; the optional ``ray`` extra), one CPU per task.

The results come back in grid order whichever backend ran them, and each point
is deterministic by its seed, so the same grid and seeds give the same table
(`TIMING_COLUMNS` — CPU seconds — excepted). ``SweepTable`` writes it as CSV
and JSON and draws a metric against one axis, a line per combination of the
others (mean over seeds, error bars one standard deviation).

The execution layer (``run_parallel``, in ``sim/parallel.py``) is generic: any
top-level (picklable) function over picklable items.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeintel.errors import ConfigError
from edgeintel.schema import short_repr
from edgeintel.sim.grid import (
    ALIASES,
    POLICY_CHOICES,
    Grid,
    axis_kind,
    is_scenario_axis,
    load_grid,
    set_path,
)
from edgeintel.sim.parallel import THREAD_ENV, ProgressFn, run_parallel

if TYPE_CHECKING:
    from edgeintel.scenario import Scenario
    from edgeintel.sim.settings import SimSettings

__all__ = [
    "ALIASES",
    "POLICY_CHOICES",
    "THREAD_ENV",
    "TIMING_COLUMNS",
    "Grid",
    "SweepPoint",
    "SweepTable",
    "is_scenario_axis",
    "load_grid",
    "run_parallel",
    "set_path",
    "simulate_point",
    "sweep",
    "sweep_points",
]

TIMING_COLUMNS = frozenset({"cpu_s", "wall_s", "events_per_cpu_s"})
"""Columns measured on the machine (not simulated): they differ between runs."""


# --------------------------------------------------------------------------- simulator points


@dataclass(frozen=True)
class SweepPoint:
    """One simulation of a sweep: the validated scenario and simulator settings, the policy,
    and the axis values (with the seed) it stands for in the table."""

    scenario: Scenario
    settings: SimSettings
    policy: str
    values: dict[str, Any]


def sweep_points(scenario: Scenario, grid: Grid) -> list[SweepPoint]:
    """Every grid point as a validated ``SweepPoint`` (in grid order); a wrong axis name or
    value raises a one-line ``ConfigError`` naming the axis before anything runs."""
    from pydantic import ValidationError

    from edgeintel.errors import format_validation_error
    from edgeintel.scenario import dump_scenario, parse_scenario
    from edgeintel.sim.settings import SimSettings

    kinds = {a: axis_kind(a, SimSettings.model_fields) for a in grid.axes}
    for v in grid.axes.get("policy", ()):
        if v not in POLICY_CHOICES:
            raise ConfigError(
                f"grid axis policy: {short_repr(v)} is not a policy; expected one of "
                f"{list(POLICY_CHOICES)}"
            )
    base_raw = dump_scenario(scenario)
    base_sim = (scenario.settings.sim or SimSettings()).model_dump(mode="json", exclude_none=True)
    scenarios: dict[str, Scenario] = {}
    out = []
    for p in grid.points():
        sc_over = {a: p[a] for a in grid.axes if kinds[a] == "scenario"}
        key = json.dumps(sc_over, sort_keys=True, default=str)
        sc = scenarios.get(key)
        if sc is None:
            raw = json.loads(json.dumps(base_raw))
            for a, v in sc_over.items():
                set_path(raw, a, v)
            where = short_repr(", ".join(f"{a}={v}" for a, v in sc_over.items()) or "base")
            sc = scenarios[key] = parse_scenario(raw, source=f"grid point {where}")
        sim_raw = json.loads(json.dumps(base_sim))
        for a in grid.axes:
            if kinds[a] == "sim":
                set_path(sim_raw, a, p[a])
        sim_raw["seed"] = p["seed"]
        try:
            settings = SimSettings.model_validate(sim_raw)
        except ValidationError as exc:  # one line naming the field
            raise format_validation_error(exc, "grid: settings.sim", root=SimSettings) from None
        out.append(SweepPoint(sc, settings, str(p.get("policy", "planner")), p))
    return out


def simulate_point(point: SweepPoint) -> dict[str, Any]:
    """Run one point (module level, so process pools and Ray pickle it by reference):
    its axis values and seed, then ``SimResult.summary()``'s figures."""
    from edgeintel.sim.api import simulate
    from edgeintel.sim.policy import FixedPolicy

    policy = None if point.policy == "planner" else FixedPolicy(point.policy)
    res = simulate(point.scenario, point.settings, policy=policy)
    figures = {  # NaN -> None; an axis (devices, duration_s) keeps its grid value
        k: (None if v != v else v) for k, v in res.summary().items() if k not in point.values
    }
    return {**point.values, **figures}


def sweep(
    scenario: Scenario,
    grid: Grid,
    workers: int | None = None,
    ray_address: str | None = None,
    progress: ProgressFn | None = None,
) -> SweepTable:
    """Simulate every point of ``grid`` on ``scenario`` (processes, or Ray with an address)
    and gather the summaries into one ``SweepTable`` in grid order."""
    points = sweep_points(scenario, grid)
    rows = run_parallel(simulate_point, points, workers, ray_address, progress)
    backend = "ray" if ray_address else ("in-process" if workers == 1 else "processes")
    meta = {"scenario": scenario.name, "points": len(points)}
    if ray_address is None:
        meta["workers"] = min(workers or os.cpu_count() or 1, len(points))
    return SweepTable(grid, rows, backend, meta)


# --------------------------------------------------------------------------- table


DEFAULT_PLOT = ("latency_p95_s", "energy_j")
"""What ``plot`` draws unless told: the tail latency and the energy a policy trades."""
INPUT_COLUMNS = frozenset({"devices", "duration_s", "tasks"})
"""Summary columns that restate the grid's inputs rather than measure an outcome."""


@dataclass
class SweepTable:
    """One row per grid point: the axis values, the seed and the point's figures."""

    grid: Grid
    rows: list[dict[str, Any]]
    backend: str = "processes"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def axes(self) -> list[str]:
        return list(self.grid.axes)

    @property
    def metrics(self) -> list[str]:
        """Figure columns (every key beyond the axes and the seed), in first-seen order."""
        keys: dict[str, None] = {}
        for r in self.rows:
            for k in r:
                if k not in self.grid.axes and k != "seed":
                    keys.setdefault(k, None)
        return list(keys)

    @property
    def columns(self) -> list[str]:
        return [*self.axes, "seed", *self.metrics]

    def deterministic_rows(self) -> list[dict[str, Any]]:
        """The rows without the machine-measured columns (equal across backends and runs)."""
        return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in self.rows]

    def to_json(self) -> dict[str, Any]:
        return {
            "grid": self.grid.to_json(),
            "backend": self.backend,
            "columns": self.columns,
            "rows": self.rows,
            "timing_columns": sorted(TIMING_COLUMNS & set(self.columns)),
            **self.meta,
        }

    def write_csv(self, path: str | Path) -> Path:
        p = Path(path)
        with p.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=self.columns)
            w.writeheader()
            for r in self.rows:
                w.writerow({k: _cell(r.get(k)) for k in self.columns})
        return p

    def write_json(self, path: str | Path) -> Path:
        p = Path(path)
        p.write_text(json.dumps(self.to_json(), indent=1, default=str), encoding="utf-8")
        return p

    def aggregate(
        self, metric: str, x: str | None = None
    ) -> dict[str, list[tuple[Any, float, float]]]:
        """``metric`` per value of axis ``x`` (mean, std over seeds), one series per
        combination of the other axes that vary (``"policy=edge, bandwidth_mbps=10"``)."""
        x = x or self.default_x()
        if x not in self.grid.axes:
            raise ConfigError(f"plot: x axis {x!r} is not an axis of the grid {self.axes}")
        others = [a for a in self.axes if a != x and len(self.grid.axes[a]) > 1]
        series: dict[str, dict[Any, list[float]]] = {}
        for r in self.rows:
            v = r.get(metric)
            if not isinstance(v, int | float) or isinstance(v, bool):
                continue
            label = ", ".join(f"{a}={r[a]}" for a in others) or metric
            series.setdefault(label, {}).setdefault(r[x], []).append(float(v))
        out: dict[str, list[tuple[Any, float, float]]] = {}
        for label, by_x in series.items():
            pts = []
            for xv in self.grid.axes[x]:
                vals = by_x.get(xv)
                if vals:
                    mean = sum(vals) / len(vals)
                    var = (
                        sum((u - mean) ** 2 for u in vals) / (len(vals) - 1)
                        if len(vals) > 1
                        else 0.0
                    )
                    pts.append((xv, mean, math.sqrt(var)))
            out[label] = pts
        return out

    def default_x(self) -> str:
        """The axis drawn along x: the numeric axis with the most values (else the first)."""
        numeric = [
            a
            for a, vs in self.grid.axes.items()
            if all(isinstance(v, int | float) and not isinstance(v, bool) for v in vs)
        ]
        pool = numeric or self.axes
        return max(pool, key=lambda a: (len(self.grid.axes[a]), -self.axes.index(a)))

    def default_metrics(self) -> list[str]:
        """What ``plot`` draws unless told: ``DEFAULT_PLOT``, else the first two outcome figures
        (not inputs such as ``duration_s``, not timings)."""
        chosen = [m for m in DEFAULT_PLOT if m in self.metrics]
        return chosen or [m for m in self.metrics if m not in TIMING_COLUMNS | INPUT_COLUMNS][:2]

    def plot(
        self, path: str | Path, metrics: Sequence[str] | None = None, x: str | None = None
    ) -> Path:
        """A PNG with one panel per metric: metric vs axis ``x``, a line per other-axes combo."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        x = x or self.default_x()
        chosen = list(metrics or self.default_metrics())
        if not chosen:
            raise ConfigError("plot: the sweep produced no numeric figures to draw")
        numeric_x = all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in self.grid.axes[x]
        )
        fig, axs = plt.subplots(1, len(chosen), figsize=(4.6 * len(chosen), 3.6), squeeze=False)
        for ax, metric in zip(axs[0], chosen, strict=True):
            for label, pts in self.aggregate(metric, x).items():
                if not pts:
                    continue
                xs = [p[0] if numeric_x else str(p[0]) for p in pts]
                ax.errorbar(xs, [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o",
                            capsize=3, label=label)  # fmt: skip
            ax.set_xlabel(x)
            ax.set_ylabel(metric)
            if numeric_x and _spans_decades(self.grid.axes[x]):
                ax.set_xscale("log")
            ys = [p[1] for pts in self.aggregate(metric, x).values() for p in pts]
            if _spans_decades(ys):
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
        handles, labels = axs[0][0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), fontsize=8,
                       bbox_to_anchor=(0.5, 1.0))  # fmt: skip
        fig.tight_layout()
        p = Path(path)
        fig.savefig(p, dpi=110, bbox_inches="tight")
        plt.close(fig)
        return p

    def write(
        self, out: str | Path, metrics: Sequence[str] | None = None, x: str | None = None
    ) -> dict[str, Path]:
        """``sweep.csv``, ``sweep.json`` and ``sweep.png`` in folder ``out``."""
        unknown = [m for m in metrics or () if m not in self.metrics]
        if unknown:
            raise ConfigError(f"--metric {unknown[0]}: not a figure of the sweep; "
                              f"expected one of {self.metrics}")  # fmt: skip
        d = Path(out)
        d.mkdir(parents=True, exist_ok=True)
        return {
            "csv": self.write_csv(d / "sweep.csv"),
            "json": self.write_json(d / "sweep.json"),
            "png": self.plot(d / "sweep.png", metrics, x),
        }


def _cell(v: Any) -> Any:
    return json.dumps(v) if isinstance(v, list | dict) else v


def _spans_decades(values: Iterable[Any]) -> bool:
    """Positive values spanning two decades or more (then the axis is drawn in log scale)."""
    vs = [float(v) for v in values]
    return len(vs) >= 3 and min(vs) > 0 and max(vs) / min(vs) >= 100
