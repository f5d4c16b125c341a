"""What a device agent counts over its run (:class:`AgentStats`), in bounded memory.

Latencies in ms, times in s since the agent's start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["LATENCY_SAMPLE", "AgentStats"]

LATENCY_SAMPLE = 4096  # latencies an agent keeps per placement (a uniform sample)


@dataclass
class AgentStats:
    """Counts of one agent run and its latencies (ms) by placement; ``correct`` counts
    results right by the task kind's rule (``TaskKind.correct``: the label; a value within
    the tolerance; the right alarm decision), reported as ``accuracy``.

    Memory stays bounded however long the agent runs: ``latency_ms`` keeps a uniform
    sample (reservoir) of at most ``LATENCY_SAMPLE`` latencies per placement (the counts
    are in ``placements``), ``timeline`` results per placement and second since the start.
    """

    produced: int = 0
    skipped: int = 0
    bytes_not_uploaded: int = 0
    rejected: int = 0
    placements: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, list[float]] = field(default_factory=dict)
    correct: int = 0
    timeline: dict[str, dict[int, int]] = field(default_factory=dict)
    right: dict[str, dict[int, int]] = field(default_factory=dict)  # of those, correct
    served_d2d: int = 0  # neighbours' inputs this device ran for them (``serve_peer``)
    seed: int = 0  # of the reservoir's draws

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def record(self, placement: str, ms: float, at_s: float, correct: bool = False) -> None:
        """One result: computed at ``placement`` in ``ms``, ``at_s`` s after the start,
        ``correct`` by the kind's rule (counted per placement and second in ``right``)."""
        n = self.placements.get(placement, 0) + 1
        self.placements[placement] = n
        lat = self.latency_ms.setdefault(placement, [])
        if len(lat) < LATENCY_SAMPLE:
            lat.append(ms)
        else:  # Algorithm R: each of the n latencies is kept with probability cap / n
            j = int(self._rng.integers(n))
            if j < LATENCY_SAMPLE:
                lat[j] = ms
        row = self.timeline.setdefault(placement, {})
        row[int(at_s)] = row.get(int(at_s), 0) + 1
        if correct:
            ok = self.right.setdefault(placement, {})
            ok[int(at_s)] = ok.get(int(at_s), 0) + 1

    def to_json(self) -> dict[str, Any]:
        lat = {
            k: {
                "p50": float(np.percentile(v, 50)),
                "p99": float(np.percentile(v, 99)),
                "n": self.placements.get(k, len(v)),
            }
            for k, v in self.latency_ms.items()
            if v
        }
        return {
            "produced": self.produced,
            "skipped": self.skipped,
            "bytes_not_uploaded": self.bytes_not_uploaded,
            "rejected": self.rejected,
            "placements": dict(self.placements),
            "latency_ms": lat,
            "accuracy": self.correct / self.produced if self.produced else None,
            "served_d2d": self.served_d2d,
        }
