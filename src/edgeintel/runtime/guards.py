"""Rollout guards: is a canary version worse than the stable one, on the same traffic?

Each guard of ``GUARDS`` compares the results of the two versions gathered in one rollout
stage (``VersionSample``: counts and latencies from the devices' result records) and
answers with a ``GuardResult``: the observed figures and whether it *trips*. A guard trips
only on statistical evidence, at a one-sided level ``alpha``:

* ``error_rate``: errors are results whose inference failed (the model raised or gave a
  non-finite output). Agresti-Caffo interval of ``p_canary - p_stable`` (each proportion
  with one success and one failure added); trips when its lower ``1 - alpha`` bound
  exceeds the declared margin ``max_error_rate_increase``.
* ``metric``: the task metric on results that carry a feedback label: the share judged
  ``correct`` (by the task kind's rule, on the device; else ``label == truth``); the
  same interval of ``acc_stable - acc_canary`` trips when its lower bound exceeds
  ``max_metric_drop``.
* ``latency_p95``: with ``q = max_latency_p95_ratio x p95(stable)``, under "the canary's
  p95 is at most ``q``" at most 5 % of canary latencies exceed ``q``; trips when the
  binomial tail ``P(X >= k | n, 0.05)`` of the ``k`` exceedances among ``n`` canary
  results is below ``alpha``.

Pure functions over counts and arrays (stdlib and numpy), so each can be checked by hand.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

from edgeintel.registry import Registry

__all__ = [
    "GUARDS",
    "GuardLimits",
    "GuardResult",
    "VersionSample",
    "agresti_caffo_lower",
    "binom_tail",
    "evaluate_guards",
]


@dataclass(frozen=True)
class GuardLimits:
    """The declared margins: how much worse the canary may be before a rollback.

    ``max_error_rate_increase`` and ``max_metric_drop`` are absolute (0.02 = two points);
    ``max_latency_p95_ratio`` a factor on the stable version's p95 latency (ms)."""

    max_error_rate_increase: float = 0.01
    max_metric_drop: float = 0.02
    max_latency_p95_ratio: float = 1.5


@dataclass
class VersionSample:
    """What one version's results in one stage showed: ``n`` results, ``errors`` among them,
    ``labelled`` results with a feedback label and ``correct`` among those, latencies (ms)."""

    n: int = 0
    errors: int = 0
    labelled: int = 0
    correct: int = 0
    latency_ms: list[float] = field(default_factory=list)

    def add(self, payload: dict[str, Any]) -> None:
        """Count one result record's payload (``error``, ``label``, ``truth``, ``latency_ms``)."""
        self.n += 1
        if payload.get("error"):
            self.errors += 1
            return
        ok, truth = payload.get("correct"), payload.get("truth")
        if isinstance(ok, bool):  # judged on the device by the task kind's rule
            self.labelled += 1
            self.correct += ok
        elif isinstance(truth, int) and not isinstance(truth, bool) and truth >= 0:
            self.labelled += 1
            self.correct += int(payload.get("label") == truth)
        ms = payload.get("latency_ms")
        if isinstance(ms, int | float) and math.isfinite(ms) and ms >= 0:
            self.latency_ms.append(float(ms))

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "error_rate": self.errors / self.n if self.n else None,
            "metric": self.correct / self.labelled if self.labelled else None,
            "latency_p95_ms": float(np.percentile(self.latency_ms, 95))
            if self.latency_ms
            else None,
        }


@dataclass(frozen=True)
class GuardResult:
    """One guard's verdict: ``canary`` and ``stable`` figures, the test's ``bound`` (or
    p-value) against the ``limit``, and whether it ``tripped`` (with the reason)."""

    guard: str
    canary: float | None
    stable: float | None
    bound: float | None
    limit: float
    tripped: bool
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "guard": self.guard,
            "canary": self.canary,
            "stable": self.stable,
            "bound": self.bound,
            "limit": self.limit,
            "tripped": self.tripped,
            "reason": self.reason,
        }


def agresti_caffo_lower(x1: int, n1: int, x2: int, n2: int, alpha: float) -> float:
    """Lower one-sided ``1 - alpha`` bound of ``p1 - p2`` (Agresti-Caffo: each proportion
    with one success and one failure added, then the Wald interval)."""
    p1, p2 = (x1 + 1) / (n1 + 2), (x2 + 1) / (n2 + 2)
    se = math.sqrt(p1 * (1 - p1) / (n1 + 2) + p2 * (1 - p2) / (n2 + 2))
    return p1 - p2 - NormalDist().inv_cdf(1 - alpha) * se


def binom_tail(k: int, n: int, p: float) -> float:
    """``P(X >= k)`` for ``X ~ Binomial(n, p)`` (exact, summed in log space)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    lp, lq = math.log(p), math.log1p(-p)
    terms = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq
        for i in range(k, n + 1)
    ]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


Guard = Callable[[VersionSample, VersionSample, GuardLimits, float], GuardResult]
GUARDS: Registry[Guard] = Registry("rollout guard")


@GUARDS.register("error_rate")
def _error_rate(c: VersionSample, s: VersionSample, lim: GuardLimits, alpha: float) -> GuardResult:
    limit = lim.max_error_rate_increase
    if not c.n or not s.n:
        return GuardResult("error_rate", None, None, None, limit, False)
    lower = agresti_caffo_lower(c.errors, c.n, s.errors, s.n, alpha)
    pc, ps = c.errors / c.n, s.errors / s.n
    why = (
        f"error rate {pc:.3f} vs stable {ps:.3f}: increase >= {lower:.3f} (at 1-{alpha:.3g}) "
        f"> {limit}"
    )
    tripped = lower > limit
    return GuardResult("error_rate", pc, ps, lower, limit, tripped, why if tripped else "")


@GUARDS.register("metric")
def _metric(c: VersionSample, s: VersionSample, lim: GuardLimits, alpha: float) -> GuardResult:
    limit = lim.max_metric_drop
    if not c.labelled or not s.labelled:
        return GuardResult("metric", None, None, None, limit, False)
    lower = agresti_caffo_lower(s.correct, s.labelled, c.correct, c.labelled, alpha)
    ac, as_ = c.correct / c.labelled, s.correct / s.labelled
    why = (
        f"share correct {ac:.3f} vs stable {as_:.3f} on labelled results: drop >= {lower:.3f} "
        f"(at 1-{alpha:.3g}) > {limit}"
    )
    tripped = lower > limit
    return GuardResult("metric", ac, as_, lower, limit, tripped, why if tripped else "")


@GUARDS.register("latency_p95")
def _latency(c: VersionSample, s: VersionSample, lim: GuardLimits, alpha: float) -> GuardResult:
    limit = lim.max_latency_p95_ratio
    if not c.latency_ms or not s.latency_ms:
        return GuardResult("latency_p95", None, None, None, limit, False)
    p95c = float(np.percentile(c.latency_ms, 95))
    p95s = float(np.percentile(s.latency_ms, 95))
    q = limit * p95s
    k = int(np.sum(np.asarray(c.latency_ms) > q))
    pvalue = binom_tail(k, len(c.latency_ms), 0.05)
    tripped = pvalue < alpha
    why = (
        f"latency p95 {p95c:.2f} ms vs stable {p95s:.2f} ms: {k}/{len(c.latency_ms)} canary "
        f"results above {limit} x stable p95 (p = {pvalue:.2g} < {alpha:.3g})"
    )
    return GuardResult("latency_p95", p95c, p95s, pvalue, limit, tripped, why if tripped else "")


def evaluate_guards(
    canary: VersionSample,
    stable: VersionSample,
    limits: GuardLimits,
    alpha: float,
    names: list[str] | None = None,
) -> list[GuardResult]:
    """Every named guard (default: all registered) on one stage's samples."""
    return [GUARDS.get(n)(canary, stable, limits, alpha) for n in names or GUARDS.names()]
