"""Constraint-driven recipe search: measure candidates, keep the Pareto front, pick one.

``search(model, budget, train_data, ...)`` runs every recipe of a search space
(sharing common prefixes, so ``prune -> int8`` reuses the pruned model), then
``select`` checks each candidate against a device ``Budget`` — latency scaled by
the device's compute speed, ONNX bytes, peak memory, accuracy — returns the
Pareto front over (accuracy, latency, bytes), the chosen candidate and a reason
for every rejected one. If nothing meets the budget, ``BudgetError`` names the
closest candidate and the constraint it misses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from edgeintel.errors import BudgetError, ConfigError
from edgeintel.inference.compress import CompressionResult, compress
from edgeintel.inference.measure import MeasureConfig, Measurement
from edgeintel.inference.recipe import Recipe, make_recipe

__all__ = [
    "Budget",
    "BudgetError",
    "Candidate",
    "Objective",
    "SearchResult",
    "Violation",
    "default_search_space",
    "pareto_front",
    "run_candidates",
    "search",
    "select",
]


class Objective(StrEnum):
    """What to maximise among candidates that meet the budget."""

    ACCURACY = "accuracy"
    LATENCY = "latency"
    SIZE = "size"


@dataclass(frozen=True)
class Budget:
    """A device's limits: latency in ms on the device (p50 or p95), bytes, peak memory, accuracy.

    ``compute_speed`` scales this machine's latency to the device (0.1 = ten times slower).
    A ``None`` limit is not checked.
    """

    max_latency_ms: float | None = None
    max_bytes: int | None = None
    max_peak_memory_bytes: int | None = None
    min_accuracy: float | None = None
    compute_speed: float = 1.0
    latency_stat: str = "p50"

    def __post_init__(self) -> None:
        for name in ("max_latency_ms", "max_bytes", "max_peak_memory_bytes"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ConfigError(f"budget.{name} must be > 0, got {v}")
        if self.min_accuracy is not None and not 0 <= self.min_accuracy <= 1:
            raise ConfigError(f"budget.min_accuracy must lie in [0, 1], got {self.min_accuracy}")
        if not self.compute_speed > 0:
            raise ConfigError(f"budget.compute_speed must be > 0, got {self.compute_speed}")
        if self.latency_stat not in ("p50", "p95"):
            raise ConfigError(
                f"budget.latency_stat must be 'p50' or 'p95', got {self.latency_stat!r}"
            )

    def latency_ms(self, m: Measurement) -> float:
        """The measured latency (this machine, raw) scaled to the device, in ms."""
        raw = m.latency.p50_ms if self.latency_stat == "p50" else m.latency.p95_ms
        return raw / self.compute_speed

    def violations(self, m: Measurement) -> list[Violation]:
        out = []
        lat = self.latency_ms(m)
        if self.max_latency_ms is not None and lat > self.max_latency_ms:
            out.append(Violation("latency", lat, self.max_latency_ms, "ms", "<="))
        if self.max_bytes is not None and m.onnx_bytes > self.max_bytes:
            out.append(Violation("bytes", m.onnx_bytes, self.max_bytes, "B", "<="))
        if (
            self.max_peak_memory_bytes is not None
            and m.peak_memory_bytes > self.max_peak_memory_bytes
        ):
            out.append(
                Violation("peak_memory", m.peak_memory_bytes, self.max_peak_memory_bytes, "B", "<=")
            )
        if self.min_accuracy is not None and m.accuracy < self.min_accuracy:
            out.append(Violation("accuracy", m.accuracy, self.min_accuracy, "", ">="))
        return out

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Violation:
    """One missed constraint: ``value`` vs ``limit`` (``op`` is what the budget requires)."""

    constraint: str
    value: float
    limit: float
    unit: str
    op: str

    @property
    def excess(self) -> float:
        """Relative miss: 0.2 = 20% over a max (or under a min)."""
        if self.op == "<=":
            return self.value / self.limit - 1.0
        return (self.limit - self.value) / max(self.limit, 1e-12)

    def __str__(self) -> str:
        fmt = "{:.4g}" if self.unit != "B" else "{:,.0f}"
        return (
            f"{self.constraint} {fmt.format(self.value)}{' ' + self.unit if self.unit else ''} "
            f"{'>' if self.op == '<=' else '<'} {fmt.format(self.limit)}"
            f"{' ' + self.unit if self.unit else ''}"
        )


@dataclass
class Candidate:
    """A measured recipe and its verdict against a budget."""

    label: str
    result: CompressionResult
    latency_ms: float = 0.0
    violations: list[Violation] = field(default_factory=list)
    on_front: bool = False
    reason: str = ""

    @property
    def measurement(self) -> Measurement:
        return self.result.final

    @property
    def feasible(self) -> bool:
        return not self.violations

    def to_json(self) -> dict[str, Any]:
        m = self.measurement
        return {
            "label": self.label,
            "recipe": self.result.recipe.to_json(),
            "accuracy": m.accuracy,
            "latency_ms_device": self.latency_ms,
            "latency_ms_raw": {"p50": m.latency.p50_ms, "p95": m.latency.p95_ms},
            "onnx_bytes": m.onnx_bytes,
            "compressed_bytes": m.compressed_bytes,
            "params": m.params,
            "macs": m.macs,
            "peak_memory_bytes": m.peak_memory_bytes,
            "feasible": self.feasible,
            "on_front": self.on_front,
            "violations": [str(v) for v in self.violations],
            "reason": self.reason,
            "warnings": self.result.warnings,
            "onnx_path": self.result.artifact.path,
        }


@dataclass
class SearchResult:
    """All candidates with verdicts, the Pareto front (indices) and the chosen candidate."""

    budget: Budget
    candidates: list[Candidate]
    front: list[int]
    chosen: Candidate | None
    objective: Objective

    @property
    def rejected(self) -> dict[str, str]:
        return {c.label: c.reason for c in self.candidates if c is not self.chosen}

    def to_json(self) -> dict[str, Any]:
        return {
            "budget": self.budget.to_json(),
            "objective": str(self.objective),
            "chosen": None if self.chosen is None else self.chosen.label,
            "front": [self.candidates[i].label for i in self.front],
            "candidates": [c.to_json() for c in self.candidates],
        }


def pareto_front(costs: np.ndarray) -> list[int]:
    """Indices of rows of ``costs`` (n, k; lower is better) not dominated by any other row.

    Row a dominates b when a <= b everywhere and a < b somewhere; equal rows both stay.
    """
    c = np.asarray(costs, dtype=np.float64)
    keep = []
    for i in range(len(c)):
        dominated = np.any(np.all(c <= c[i], axis=1) & np.any(c < c[i], axis=1))
        if not dominated:
            keep.append(i)
    return keep


def default_search_space(quick: bool = False) -> list[Recipe]:
    """Recipes and knobs tried by default (small enough for ~1-2 minutes on the zoo models)."""
    q = ("quantize_static", {"calibration": "minmax"})
    space = [
        make_recipe("fp32", []),
        make_recipe("int8-static", [q]),
        make_recipe("prune50-int8", [("prune_structured", {"ratio": 0.5}), q]),
    ]
    if quick:
        return space
    return [
        *space,
        make_recipe("int8-dynamic", ["quantize_dynamic"]),
        make_recipe("int8-static-entropy", [("quantize_static", {"calibration": "entropy"})]),
        make_recipe("qat-int8", [("qat", {}), q]),
        make_recipe("prune50", [("prune_structured", {"ratio": 0.5})]),
        make_recipe("prune25-int8", [("prune_structured", {"ratio": 0.25}), q]),
        make_recipe("prune75-int8", [("prune_structured", {"ratio": 0.75}), q]),
        make_recipe("lowrank90-int8", [("low_rank", {"energy": 0.9}), q]),
        make_recipe("compact-int8", [("compact", {}), q]),
        make_recipe("distill-int8", [("distill", {}), q]),
    ]


def run_candidates(
    model: Any,
    recipes: list[Recipe],
    train_data: Any,
    calib_data: Any = None,
    *,
    eval_data: Any = None,
    measure: MeasureConfig | None = None,
    cache: dict[str, Any] | None = None,
    **kwargs: Any,
) -> list[CompressionResult]:
    """Compress with every recipe (shared prefixes run once); latency is this machine's."""
    if not recipes:
        raise ConfigError("search space: no recipes to try")
    names = [r.name for r in recipes]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"search space: duplicate recipe name {dup[0]!r}")
    cache = {} if cache is None else cache
    mcfg = MeasureConfig(
        runs=(measure or MeasureConfig()).runs, warmup=(measure or MeasureConfig()).warmup
    )
    return [
        compress(
            model,
            r,
            train_data,
            calib_data,
            eval_data=eval_data,
            measure=mcfg,
            cache=cache,
            **kwargs,
        )
        for r in recipes
    ]


def _rank_key(c: Candidate, objective: Objective) -> tuple[float, ...]:
    m = c.measurement
    acc, lat, size = -m.accuracy, c.latency_ms, float(m.onnx_bytes)
    if objective == Objective.LATENCY:
        return (lat, acc, size)
    if objective == Objective.SIZE:
        return (size, acc, lat)
    return (acc, lat, size)


def select(
    results: list[CompressionResult],
    budget: Budget,
    objective: Objective | str = Objective.ACCURACY,
    device: str = "device",
) -> SearchResult:
    """Judge measured ``results`` against ``budget``; raise BudgetError when none fits."""
    objective = Objective(objective)
    cands = []
    for r in results:
        c = Candidate(r.recipe.name, r)
        c.latency_ms = budget.latency_ms(r.final)
        c.violations = budget.violations(r.final)
        cands.append(c)
    costs = np.array(
        [[-c.measurement.accuracy, c.latency_ms, c.measurement.onnx_bytes] for c in cands]
    )
    front = pareto_front(costs)
    for i in front:
        cands[i].on_front = True
    feasible = [c for c in cands if c.feasible]
    chosen = min(feasible, key=lambda c: _rank_key(c, objective)) if feasible else None
    for c in cands:
        if c is chosen:
            c.reason = f"chosen: meets the budget with the best {objective}"
        elif c.violations:
            c.reason = "misses " + "; ".join(str(v) for v in c.violations)
        elif chosen is not None:
            c.reason = (
                f"meets the budget but is not the best by {objective} "
                f"(accuracy {c.measurement.accuracy:.4f}, {c.latency_ms:.4g} ms, "
                f"{c.measurement.onnx_bytes:,} B vs chosen {chosen.label})"
            )
    result = SearchResult(budget, cands, front, chosen, objective)
    if chosen is None:
        closest = min(cands, key=lambda c: (sum(max(v.excess, 0) for v in c.violations), c.label))
        worst = max(closest.violations, key=lambda v: v.excess)
        raise BudgetError(
            f"no candidate meets the budget for {device}: closest is {closest.label!r}, which "
            f"misses {'; '.join(str(v) for v in closest.violations)} "
            f"(largest miss: {worst.constraint})",
            result,
        )
    return result


def search(
    model: Any,
    budget: Budget,
    train_data: Any,
    calib_data: Any = None,
    *,
    space: list[Recipe] | None = None,
    objective: Objective | str = Objective.ACCURACY,
    eval_data: Any = None,
    measure: MeasureConfig | None = None,
    device: str = "device",
    **kwargs: Any,
) -> SearchResult:
    """Run the search space on ``model`` and select for ``budget`` (see module docstring)."""
    results = run_candidates(
        model,
        space or default_search_space(),
        train_data,
        calib_data,
        eval_data=eval_data,
        measure=measure,
        **kwargs,
    )
    return select(results, budget, objective, device)
