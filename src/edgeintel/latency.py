"""Honest ONNX Runtime latency: batch 1, one intra-op thread, after warm-up."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeintel.errors import ConfigError
from edgeintel.onnx_files import make_session

__all__ = ["LatencyStats", "measure_latency", "scale_latency", "time_calls", "windows_agree"]


@dataclass(frozen=True)
class LatencyStats:
    """Latency percentiles in milliseconds over ``runs`` timed calls.

    ``windows`` timing windows of the calls were taken; ``stable`` says whether
    the last windows' medians agreed within the tolerance (as Triton's
    perf_analyzer requires), ``None`` when only one window was taken.
    ``estimated`` marks figures scaled from this machine by a device's compute
    speed rather than measured on that device. ``samples_ms`` keeps the raw
    timings (left out of ``to_json``; see ``samples_json``).
    """

    p50_ms: float
    p95_ms: float
    mean_ms: float
    runs: int
    p99_ms: float | None = None
    std_ms: float | None = None
    throughput_per_s: float | None = None
    windows: int = 1
    stable: bool | None = None
    estimated: bool = False
    samples_ms: tuple[float, ...] = field(default=(), repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("samples_ms")
        return d

    def samples_json(self, digits: int = 5) -> list[float]:
        """The raw per-call timings (ms), rounded, for results files and distribution plots."""
        return [round(float(v), digits) for v in self.samples_ms]


def _percentiles(
    samples_ms: np.ndarray, windows: int = 1, stable: bool | None = None
) -> LatencyStats:
    mean = float(samples_ms.mean())
    return LatencyStats(
        p50_ms=float(np.percentile(samples_ms, 50)),
        p95_ms=float(np.percentile(samples_ms, 95)),
        mean_ms=mean,
        runs=len(samples_ms),
        p99_ms=float(np.percentile(samples_ms, 99)),
        std_ms=float(samples_ms.std()),
        throughput_per_s=1000.0 / mean if mean > 0 else None,
        windows=windows,
        stable=stable,
        samples_ms=tuple(float(v) for v in samples_ms),
    )


def measure_latency(
    model: str | Path | Any,
    sample: np.ndarray,
    runs: int = 100,
    warmup: int = 10,
    *,
    windows: int = 1,
    tolerance: float = 0.15,
) -> LatencyStats:
    """Time ``runs`` single-sample inferences of an ONNX file (or session) on this machine.

    ``sample`` is one input with its batch axis of 1. The session uses one
    intra-op thread so figures compare across models on a shared machine.
    ``windows`` > 1 repeats windows of ``runs`` calls until they agree (see
    ``time_calls``).
    """
    session = make_session(model) if isinstance(model, str | Path) else model
    name = session.get_inputs()[0].name
    feed = {name: np.ascontiguousarray(sample, dtype=np.float32)}
    return time_calls(
        lambda: session.run(None, feed), runs, warmup, windows=windows, tolerance=tolerance
    )


def windows_agree(medians: list[float], tolerance: float) -> bool:
    """True when every median lies within ``tolerance`` (fraction) of the median of them."""
    if not medians:
        return False
    centre = float(np.median(medians))
    return all(abs(m - centre) <= tolerance * centre for m in medians)


def time_calls(
    call: Callable[[], object],
    runs: int,
    warmup: int,
    *,
    windows: int = 1,
    tolerance: float = 0.15,
    max_windows: int = 8,
) -> LatencyStats:
    """Call ``call`` ``warmup`` times untimed, then time it in windows of ``runs`` calls (ms).

    With ``windows`` > 1, windows are repeated until the medians of the last
    ``windows`` windows agree within ``tolerance`` (a fraction, 0.15 = 15 %)
    or ``max_windows`` were taken; the statistics pool those last windows and
    ``stable`` records whether they agreed.
    """
    if runs < 1:
        raise ConfigError(f"latency runs must be >= 1, got {runs}")
    if windows < 1 or max_windows < windows:
        raise ConfigError(f"latency windows must be in [1, max_windows], got {windows}")
    for _ in range(warmup):
        call()
    taken: list[np.ndarray] = []
    while True:
        times = np.empty(runs)
        for i in range(runs):
            t0 = time.perf_counter()
            call()
            times[i] = (time.perf_counter() - t0) * 1000.0
        taken.append(times)
        if windows == 1:
            return _percentiles(times)
        last = taken[-windows:]
        agree = len(last) == windows and windows_agree(
            [float(np.median(w)) for w in last], tolerance
        )
        if agree or len(taken) >= max_windows:
            return _percentiles(np.concatenate(last), windows=len(taken), stable=agree)


def scale_latency(stats: LatencyStats, compute_speed: float) -> LatencyStats:
    """Latency on a device ``compute_speed`` times as fast as this machine (0.1 = 10x slower).

    The result is marked ``estimated`` (unless ``compute_speed`` is 1): it is
    this machine's timing scaled, not a measurement on the device.
    """
    if compute_speed <= 0:
        raise ConfigError(f"compute_speed must be > 0, got {compute_speed}")
    f = 1.0 / compute_speed

    def sc(v: float | None) -> float | None:
        return None if v is None else v * f

    return replace(
        stats,
        p50_ms=stats.p50_ms * f,
        p95_ms=stats.p95_ms * f,
        mean_ms=stats.mean_ms * f,
        p99_ms=sc(stats.p99_ms),
        std_ms=sc(stats.std_ms),
        throughput_per_s=None if stats.throughput_per_s is None else stats.throughput_per_s / f,
        estimated=stats.estimated or compute_speed != 1.0,
        samples_ms=tuple(v * f for v in stats.samples_ms),
    )
