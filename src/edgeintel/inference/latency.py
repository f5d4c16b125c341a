"""Honest ONNX Runtime latency: batch 1, one intra-op thread, after warm-up."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeintel.errors import ConfigError
from edgeintel.models.export import make_session

__all__ = ["LatencyStats", "measure_latency", "scale_latency", "time_calls"]


@dataclass(frozen=True)
class LatencyStats:
    """Latency percentiles in milliseconds over ``runs`` timed calls."""

    p50_ms: float
    p95_ms: float
    mean_ms: float
    runs: int

    def to_json(self) -> dict[str, float | int]:
        return asdict(self)


def _percentiles(samples_ms: np.ndarray) -> LatencyStats:
    return LatencyStats(
        p50_ms=float(np.percentile(samples_ms, 50)),
        p95_ms=float(np.percentile(samples_ms, 95)),
        mean_ms=float(samples_ms.mean()),
        runs=len(samples_ms),
    )


def measure_latency(
    model: str | Path | Any,
    sample: np.ndarray,
    runs: int = 100,
    warmup: int = 10,
) -> LatencyStats:
    """Time ``runs`` single-sample inferences of an ONNX file (or session) on this machine.

    ``sample`` is one input with its batch axis of 1. The session uses one
    intra-op thread so figures compare across models on a shared machine.
    """
    session = make_session(model) if isinstance(model, str | Path) else model
    name = session.get_inputs()[0].name
    feed = {name: np.ascontiguousarray(sample, dtype=np.float32)}
    return time_calls(lambda: session.run(None, feed), runs, warmup)


def time_calls(call: Callable[[], object], runs: int, warmup: int) -> LatencyStats:
    """Call ``call`` ``warmup`` times untimed, then ``runs`` times timed (ms percentiles)."""
    if runs < 1:
        raise ConfigError(f"latency runs must be >= 1, got {runs}")
    for _ in range(warmup):
        call()
    times = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        call()
        times[i] = (time.perf_counter() - t0) * 1000.0
    return _percentiles(times)


def scale_latency(stats: LatencyStats, compute_speed: float) -> LatencyStats:
    """Latency on a device ``compute_speed`` times as fast as this machine (0.1 = 10x slower)."""
    if compute_speed <= 0:
        raise ConfigError(f"compute_speed must be > 0, got {compute_speed}")
    f = 1.0 / compute_speed
    return LatencyStats(stats.p50_ms * f, stats.p95_ms * f, stats.mean_ms * f, stats.runs)
