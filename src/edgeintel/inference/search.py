"""Constraint-driven recipe search: measure candidates, keep the Pareto front, pick one.

``search(model, budget, train_data, ...)`` runs every recipe of a search space
(sharing common prefixes, so ``prune -> int8`` reuses the pruned model), then
``select`` checks each candidate against a device ``Budget`` — latency scaled by
the device's compute speed, ONNX bytes, peak memory, the task kind's metric (a
floor on accuracy, or the largest drop of the kind's headline metric from the
uncompressed model) — returns the Pareto front over (metric, latency, bytes), the
chosen candidate and a reason for every rejected one. If nothing meets the budget,
``BudgetError`` names the closest candidate and the constraint it misses.
"""

from __future__ import annotations

import math
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
    """What to optimise among candidates that meet the budget: ``metric`` the task kind's
    headline (best first; ``accuracy`` is its name for a classifier), latency or size."""

    METRIC = "metric"
    ACCURACY = "accuracy"
    LATENCY = "latency"
    SIZE = "size"


@dataclass(frozen=True)
class Budget:
    """A device's limits: latency in ms on the device (p50 or p95), bytes, peak memory, and
    quality: ``min_accuracy`` (a classifier's floor) and ``max_metric_drop``, the largest
    drop of the task kind's headline metric from the uncompressed (fp32) model measured on
    the same held-out set, in the metric's unit (accuracy 0.01 = one point; RMSE in target
    units; AUROC).

    ``compute_speed`` scales this machine's latency to the device (0.1 = ten times slower).
    A ``None`` limit is not checked.
    """

    max_latency_ms: float | None = None
    max_bytes: int | None = None
    max_peak_memory_bytes: int | None = None
    min_accuracy: float | None = None
    compute_speed: float = 1.0
    latency_stat: str = "p50"
    max_metric_drop: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_latency_ms", "max_bytes", "max_peak_memory_bytes"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ConfigError(f"budget.{name} must be > 0, got {v}")
        if self.min_accuracy is not None and not 0 <= self.min_accuracy <= 1:
            raise ConfigError(f"budget.min_accuracy must lie in [0, 1], got {self.min_accuracy}")
        if self.max_metric_drop is not None and not (
            math.isfinite(self.max_metric_drop) and self.max_metric_drop >= 0
        ):
            raise ConfigError(
                f"budget.max_metric_drop must be a finite number >= 0, got {self.max_metric_drop}"
            )
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

    def violations(self, m: Measurement, reference: Measurement | None = None) -> list[Violation]:
        """The constraints ``m`` misses; ``max_metric_drop`` is judged against ``reference``
        (the uncompressed model on the same held-out set; required when it is set)."""
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
        if self.max_metric_drop is not None:
            if reference is None:
                raise ConfigError(
                    "budget.max_metric_drop needs the uncompressed model's measurement"
                )
            drop = m.drop_from(reference)
            if drop > self.max_metric_drop:
                out.append(Violation(f"{m.metric} drop", drop, self.max_metric_drop, "", "<="))
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
        """Relative miss: 0.2 = 20% over a max (or under a min); a miss of a zero max is
        infinite."""
        if self.op == "<=":
            if self.limit <= 0:
                return math.inf if self.value > self.limit else 0.0
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
            m.metric: m.metric_value,
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
    acc, lat, size = -m.score, c.latency_ms, float(m.onnx_bytes)
    if objective == Objective.LATENCY:
        return (lat, acc, size)
    if objective == Objective.SIZE:
        return (size, acc, lat)
    return (acc, lat, size)


def tie_margin(m: Measurement) -> float:
    """How far below the best a candidate's metric may lie and still count as a tie: the
    95 % half-width of an accuracy on ``m.samples`` held-out samples (normal approximation,
    at least one sample's worth); 0 for other metrics or an unknown sample count."""
    if m.metric != "accuracy" or m.samples <= 0:
        return 0.0
    p, n = min(max(m.metric_value, 0.0), 1.0), m.samples
    return max(1.96 * math.sqrt(p * (1 - p) / n), 1.0 / n)


def _ties(feasible: list[Candidate], objective: Objective) -> list[Candidate]:
    """The feasible candidates whose metric is within the best one's validation uncertainty
    (``tie_margin``); the metric objectives choose among them by latency, then size. For
    the latency and size objectives, the best by the objective alone."""
    if not feasible:
        return []
    if objective not in (Objective.METRIC, Objective.ACCURACY):
        return [min(feasible, key=lambda c: _rank_key(c, objective))]
    best = min(feasible, key=lambda c: _rank_key(c, objective))
    margin = tie_margin(best.measurement)
    return [c for c in feasible if best.measurement.score - c.measurement.score <= margin + 1e-12]


def _objective_name(objective: Objective, c: Candidate) -> str:
    """The objective in words: the metric's own name for ``metric`` (accuracy, rmse)."""
    return c.measurement.metric if objective == Objective.METRIC else str(objective)


def select(
    results: list[CompressionResult],
    budget: Budget,
    objective: Objective | str = Objective.METRIC,
    device: str = "device",
) -> SearchResult:
    """Judge measured ``results`` against ``budget``; raise BudgetError when none fits.

    Candidates are compared by their task kind's headline metric (``Measurement.score``),
    so a lower RMSE ranks like a higher accuracy."""
    objective = Objective(objective)
    if not results:
        raise ConfigError("search: no measured candidates to select from")
    metrics = {r.final.metric for r in results}
    if len(metrics) > 1:
        raise ConfigError(f"search: candidates measured by different metrics {sorted(metrics)}")
    if objective == Objective.ACCURACY and metrics != {"accuracy"}:
        raise ConfigError(
            f"objective 'accuracy': the candidates' metric is {metrics.pop()}; use 'metric'"
        )
    cands = []
    for r in results:
        c = Candidate(r.recipe.name, r)
        c.latency_ms = budget.latency_ms(r.final)
        ref = r.baseline if budget.max_metric_drop is not None else None
        c.violations = budget.violations(r.final, ref)
        cands.append(c)
    costs = np.array(
        [[-c.measurement.score, c.latency_ms, c.measurement.onnx_bytes] for c in cands]
    )
    front = pareto_front(costs)
    for i in front:
        cands[i].on_front = True
    feasible = [c for c in cands if c.feasible]
    tied = _ties(feasible, objective)
    # within the validation set's uncertainty a metric difference is noise: the cheaper wins
    chosen = (
        min(tied, key=lambda c: (c.latency_ms, c.measurement.onnx_bytes, c.label))
        if (len(tied) > 1)
        else (tied[0] if tied else None)
    )
    margin = tie_margin(chosen.measurement) if chosen is not None else 0.0
    for c in cands:
        if c is chosen and len(tied) > 1:
            c.reason = (
                f"chosen: meets the budget; {len(tied)} candidates lie within the validation "
                f"uncertainty (+-{margin:.3f} {c.measurement.metric} on "
                f"{c.measurement.samples} samples) of the best, and this is the fastest of them"
            )
        elif c is chosen:
            c.reason = f"chosen: meets the budget with the best {_objective_name(objective, c)}"
        elif c in tied and chosen is not None:
            c.reason = (
                f"ties the chosen {chosen.label} within the validation uncertainty but is "
                f"slower ({c.latency_ms:.4g} ms vs {chosen.latency_ms:.4g} ms)"
            )
        elif c.violations:
            c.reason = "misses " + "; ".join(str(v) for v in c.violations)
        elif chosen is not None:
            c.reason = (
                f"meets the budget but is not the best by {_objective_name(objective, c)} "
                f"({c.measurement.metric} {c.measurement.metric_value:.4f}, {c.latency_ms:.4g} ms, "
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
    objective: Objective | str = Objective.METRIC,
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
