"""Per-model inference statistics in the shape of Triton's statistics extension.

``GET /v2/models[/{name}[/versions/{v}]]/stats`` and gRPC ``ModelStatistics`` answer
with these counters: requests that succeeded or failed (count, total ns), time queued
before a batch started and time in ONNX Runtime per request, result cache hits and
misses, and per batch size the ONNX Runtime calls and their time. Times are
nanoseconds; ``last_inference`` is milliseconds since the Unix epoch.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Duration", "ModelStats", "StatsBook"]


@dataclass
class Duration:
    """A count and the total nanoseconds of one kind of event."""

    count: int = 0
    ns: int = 0

    def add(self, seconds: float, n: int = 1) -> None:
        self.count += n
        self.ns += int(seconds * 1e9)

    def to_json(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


_KINDS = (
    "success",
    "fail",
    "queue",
    "compute_input",
    "compute_infer",
    "compute_output",
    "cache_hit",
    "cache_miss",
)


@dataclass
class ModelStats:
    """The counters of one model version."""

    name: str
    version: str
    last_inference: int = 0
    inference_count: int = 0
    execution_count: int = 0
    inference: dict[str, Duration] = field(default_factory=lambda: {k: Duration() for k in _KINDS})
    batches: dict[int, Duration] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "last_inference": self.last_inference,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {k: d.to_json() for k, d in self.inference.items()},
            "batch_stats": [
                {
                    "batch_size": size,
                    "compute_input": {"count": d.count, "ns": 0},
                    "compute_infer": d.to_json(),
                    "compute_output": {"count": d.count, "ns": 0},
                }
                for size, d in sorted(self.batches.items())
            ],
        }


class StatsBook:
    """Thread-safe ``ModelStats`` per (model, version); only served models get an entry."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats: dict[tuple[str, str], ModelStats] = {}

    def _of(self, model: str, version: str) -> ModelStats:
        s = self._stats.get((model, version))
        if s is None:
            s = self._stats[(model, version)] = ModelStats(model, version)
        return s

    def request(self, model: str, version: str, seconds: float, ok: bool, rows: int) -> None:
        """One answered infer request of ``rows`` rows."""
        with self._lock:
            s = self._of(model, version)
            s.inference["success" if ok else "fail"].add(seconds)
            if ok:
                s.inference_count += rows
                s.last_inference = int(time.time() * 1000)

    def cache(self, model: str, version: str, hit: bool, seconds: float) -> None:
        with self._lock:
            self._of(model, version).inference["cache_hit" if hit else "cache_miss"].add(seconds)

    def batch(
        self, model: str, version: str, rows: int, waits_s: list[float], run_s: float
    ) -> None:
        """One ONNX Runtime call of ``rows`` rows for ``len(waits_s)`` queued requests."""
        with self._lock:
            s = self._of(model, version)
            s.execution_count += 1
            for w in waits_s:
                s.inference["queue"].add(w)
                s.inference["compute_infer"].add(run_s)
            s.batches.setdefault(rows, Duration()).add(run_s)

    def snapshot(self, keys: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """Statistics of the given model versions (zeros for one not yet called)."""
        with self._lock:
            return [(self._stats.get(k) or ModelStats(k[0], k[1])).to_json() for k in sorted(keys)]
