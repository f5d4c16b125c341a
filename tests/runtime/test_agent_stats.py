"""An agent's figures stay bounded however long it runs (the 30-minute soak found them
growing by ~120 bytes per result): a uniform sample of latencies per placement, counts
per placement and per second, percentiles still those of every result."""

from __future__ import annotations

import numpy as np

from edgeintel.runtime.agent_stats import LATENCY_SAMPLE, AgentStats


def test_stats_memory_is_bounded_and_percentiles_hold() -> None:
    rng = np.random.default_rng(0)
    values = rng.uniform(0.0, 100.0, 50_000)
    st = AgentStats(seed=1)
    for i, ms in enumerate(values):
        st.record("edge" if i % 5 else "device", float(ms), i / 20.0)  # 20 results/s
    assert st.placements == {"device": 10_000, "edge": 40_000}
    assert all(len(v) == LATENCY_SAMPLE for v in st.latency_ms.values())
    assert sum(sum(per.values()) for per in st.timeline.values()) == 50_000
    assert len(st.timeline["edge"]) == 2_500  # one bin per second, not one per result
    edge = values[np.arange(50_000) % 5 != 0]
    sample = np.asarray(st.latency_ms["edge"])
    for q in (50, 95):  # a uniform sample: the percentiles of all 40,000 within a point
        assert abs(np.percentile(sample, q) - np.percentile(edge, q)) < 2.0
    out = st.to_json()
    assert out["latency_ms"]["edge"]["n"] == 40_000
