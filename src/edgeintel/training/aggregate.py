"""Aggregation rules: pure functions over lists of updates (each a list of numpy arrays).

An *update* is what one client sends: a list of float32 arrays in the model's
``get_weights`` order (weights or weight deltas; the rules do not care). Rules:

- ``fedavg``: weighted mean (McMahan et al. 2017); weights are sample counts.
- ``krum``: the single update with the smallest sum of squared distances to its
  ``n - f - 2`` nearest neighbours (Blanchard et al. 2017); needs ``2f + 2 < n``.
- ``multi_krum``: the weighted mean of the ``m`` updates with the best Krum
  scores (scores computed once, as Flower does); ``m`` defaults to ``n - f``.
- ``median``: coordinate-wise median (Yin et al. 2018); unweighted; tolerates
  fewer than ``n / 2`` outliers.
- ``trimmed_mean``: per coordinate, drop the ``f`` largest and ``f`` smallest
  values and average the rest (Yin et al. 2018); unweighted; needs ``n > 2f``.
- ``norm_clip``: scale every update to an L2 norm of at most ``clip_norm``, then
  take the weighted mean (Sun et al. 2019).

``aggregate(updates, weights, config)`` is the one verb; ``AGGREGATORS`` holds
the rules so users can register their own. Every rule raises ``DataError`` on
mismatched shapes, non-finite values or a zero total weight; the federated
engine drops non-finite updates first (``filter_finite``) and counts them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from edgeintel.errors import ConfigError, DataError
from edgeintel.registry import Registry

__all__ = [
    "AGGREGATORS",
    "AggregationConfig",
    "AggregationRule",
    "Update",
    "aggregate",
    "clip_by_norm",
    "coordinate_median",
    "filter_finite",
    "krum",
    "krum_scores",
    "multi_krum",
    "trimmed_mean",
    "weighted_mean",
]

Update = Sequence[np.ndarray]


class AggregationRule(StrEnum):
    FEDAVG = "fedavg"
    KRUM = "krum"
    MULTI_KRUM = "multi_krum"
    MEDIAN = "median"
    TRIMMED_MEAN = "trimmed_mean"
    NORM_CLIP = "norm_clip"


@dataclass(frozen=True)
class AggregationConfig:
    """Which rule, and its parameters.

    ``f``: number of Byzantine updates the rule must tolerate (krum, multi_krum,
    trimmed_mean). ``m``: how many updates multi_krum averages (``None``: n - f).
    ``clip_norm``: L2 bound of norm_clip (same units as the updates).
    """

    rule: str = AggregationRule.FEDAVG
    f: int = 0
    m: int | None = None
    clip_norm: float | None = None

    def __post_init__(self) -> None:
        AGGREGATORS.get(str(self.rule))  # raises ConfigError listing the known rules
        if self.f < 0:
            raise ConfigError(f"aggregation f must be >= 0, got {self.f}")
        if self.m is not None and self.m < 1:
            raise ConfigError(f"aggregation m must be >= 1, got {self.m}")
        if self.rule == AggregationRule.NORM_CLIP and (
            self.clip_norm is None or not self.clip_norm > 0
        ):
            raise ConfigError(f"norm_clip needs clip_norm > 0, got {self.clip_norm}")
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ConfigError(f"clip_norm must be > 0, got {self.clip_norm}")


Aggregator = Callable[[list[Update], np.ndarray, AggregationConfig], list[np.ndarray]]
AGGREGATORS: Registry[Aggregator] = Registry("aggregation rule")


# --------------------------------------------------------------------------- checks


def _check(updates: Sequence[Update], weights: Sequence[float] | np.ndarray | None) -> np.ndarray:
    """Validate shapes, finiteness and weights; return weights as float64 (ones if None)."""
    if len(updates) == 0:
        raise DataError("cannot aggregate zero updates")
    ref = [np.shape(a) for a in updates[0]]
    for i, u in enumerate(updates):
        if len(u) != len(ref):
            raise DataError(f"update {i} has {len(u)} arrays, update 0 has {len(ref)}")
        for j, a in enumerate(u):
            if np.shape(a) != ref[j]:
                raise DataError(
                    f"update {i}: array {j} has shape {np.shape(a)}, update 0 has {ref[j]}"
                )
            if not np.isfinite(a).all():
                raise DataError(f"update {i}: array {j} contains NaN or inf")
    if weights is None:
        return np.ones(len(updates))
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (len(updates),):
        raise DataError(f"expected {len(updates)} weights, got shape {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise DataError("weights must be finite and >= 0")
    if w.sum() <= 0:
        raise DataError("total weight of the updates is zero; at least one must be > 0")
    return w


def filter_finite(
    updates: Sequence[Update], weights: Sequence[float] | np.ndarray
) -> tuple[list[Update], np.ndarray, list[int]]:
    """Drop updates holding NaN or inf; return (kept, their weights, rejected indices)."""
    w = np.asarray(weights, dtype=np.float64)
    keep = [i for i, u in enumerate(updates) if all(np.isfinite(a).all() for a in u)]
    rejected = [i for i in range(len(updates)) if i not in set(keep)]
    return [updates[i] for i in keep], w[keep], rejected


def _flat(updates: Sequence[Update]) -> np.ndarray:
    """(n, d) float64 matrix of flattened updates (for distance-based rules)."""
    return np.stack([np.concatenate([np.ravel(a) for a in u]) for u in updates]).astype(np.float64)


# --------------------------------------------------------------------------- rules


def weighted_mean(
    updates: Sequence[Update], weights: Sequence[float] | np.ndarray | None
) -> list[np.ndarray]:
    """sum_i w_i u_i / sum_i w_i, array by array (accumulated in float64)."""
    w = _check(updates, weights)
    w = w / w.sum()
    out = []
    for j in range(len(updates[0])):
        acc = np.zeros(np.shape(updates[0][j]), dtype=np.float64)
        tmp = np.empty_like(acc)
        for wi, u in zip(w, updates, strict=True):
            if wi != 0.0:
                np.multiply(u[j], wi, out=tmp)  # no temporary per update
                acc += tmp
        out.append(acc.astype(np.float32))
    return out


def krum_scores(flat: np.ndarray, f: int) -> np.ndarray:
    """Krum score of each row: sum of squared distances to its n - f - 2 nearest other rows."""
    n = len(flat)
    if not 2 * f + 2 < n:
        raise ConfigError(
            f"krum with f={f} needs more than 2f+2={2 * f + 2} updates, got {n}; lower f or "
            "sample more clients"
        )
    sq = (flat**2).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * flat @ flat.T, 0.0)
    np.fill_diagonal(d2, np.inf)
    nearest = np.sort(d2, axis=1)[:, : n - f - 2]
    return nearest.sum(1)


def krum(updates: Sequence[Update], f: int) -> list[np.ndarray]:
    """The update with the lowest Krum score (ties: lowest index)."""
    _check(updates, None)
    scores = krum_scores(_flat(updates), f)
    best = int(np.argmin(scores))
    return [np.asarray(a, dtype=np.float32).copy() for a in updates[best]]


def multi_krum(
    updates: Sequence[Update], weights: Sequence[float] | np.ndarray | None, f: int, m: int | None
) -> list[np.ndarray]:
    """Weighted mean of the ``m`` updates with the lowest Krum scores (default m = n - f)."""
    w = _check(updates, weights)
    n = len(updates)
    m = n - f if m is None else m
    if not 1 <= m <= n - f:
        raise ConfigError(f"multi_krum m must lie in [1, n - f] = [1, {n - f}], got {m}")
    scores = krum_scores(_flat(updates), f)
    chosen = np.argsort(scores, kind="stable")[:m]
    return weighted_mean([updates[i] for i in chosen], w[chosen])


def coordinate_median(updates: Sequence[Update]) -> list[np.ndarray]:
    """Coordinate-wise median (mean of the two middle values when n is even)."""
    _check(updates, None)
    return [
        np.median(np.stack([np.asarray(u[j], dtype=np.float64) for u in updates]), axis=0).astype(
            np.float32
        )
        for j in range(len(updates[0]))
    ]


def trimmed_mean(updates: Sequence[Update], f: int) -> list[np.ndarray]:
    """Per coordinate, the mean after dropping the ``f`` largest and ``f`` smallest values."""
    _check(updates, None)
    n = len(updates)
    if not n > 2 * f:
        raise ConfigError(f"trimmed_mean with f={f} needs more than 2f={2 * f} updates, got {n}")
    out = []
    for j in range(len(updates[0])):
        s = np.sort(np.stack([np.asarray(u[j], dtype=np.float64) for u in updates]), axis=0)
        out.append(s[f : n - f].mean(axis=0).astype(np.float32))
    return out


def clip_by_norm(update: Update, max_norm: float) -> list[np.ndarray]:
    """Scale ``update`` so that its global L2 norm is at most ``max_norm``."""
    norm = float(np.sqrt(sum(float(np.sum(np.square(a, dtype=np.float64))) for a in update)))
    scale = min(1.0, max_norm / norm) if norm > 0 else 1.0
    return [(np.asarray(a, dtype=np.float64) * scale).astype(np.float32) for a in update]


# --------------------------------------------------------------------------- registry + verb


@AGGREGATORS.register(AggregationRule.FEDAVG)
def _fedavg(updates: list[Update], weights: np.ndarray, cfg: AggregationConfig) -> list[np.ndarray]:
    return weighted_mean(updates, weights)


@AGGREGATORS.register(AggregationRule.KRUM)
def _krum(updates: list[Update], weights: np.ndarray, cfg: AggregationConfig) -> list[np.ndarray]:
    _check(updates, weights)
    return krum(updates, cfg.f)


@AGGREGATORS.register(AggregationRule.MULTI_KRUM)
def _multi_krum(
    updates: list[Update], weights: np.ndarray, cfg: AggregationConfig
) -> list[np.ndarray]:
    return multi_krum(updates, weights, cfg.f, cfg.m)


@AGGREGATORS.register(AggregationRule.MEDIAN)
def _median(updates: list[Update], weights: np.ndarray, cfg: AggregationConfig) -> list[np.ndarray]:
    _check(updates, weights)
    return coordinate_median(updates)


@AGGREGATORS.register(AggregationRule.TRIMMED_MEAN)
def _trimmed(
    updates: list[Update], weights: np.ndarray, cfg: AggregationConfig
) -> list[np.ndarray]:
    _check(updates, weights)
    return trimmed_mean(updates, cfg.f)


@AGGREGATORS.register(AggregationRule.NORM_CLIP)
def _norm_clip(
    updates: list[Update], weights: np.ndarray, cfg: AggregationConfig
) -> list[np.ndarray]:
    w = _check(updates, weights)
    if cfg.clip_norm is None:
        raise ConfigError("norm_clip needs clip_norm > 0")
    return weighted_mean([clip_by_norm(u, cfg.clip_norm) for u in updates], w)


def aggregate(
    updates: Sequence[Update],
    weights: Sequence[float] | np.ndarray | None,
    config: AggregationConfig | None = None,
) -> list[np.ndarray]:
    """Combine client updates with the configured rule; weights default to all ones."""
    cfg = config or AggregationConfig()
    w = _check(updates, weights)
    return AGGREGATORS.get(str(cfg.rule))(list(updates), w, cfg)
