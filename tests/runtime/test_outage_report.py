"""The runtime section's outage account: which trace seconds a link was down, and the
results served inside and outside those windows (hand-computed)."""

from __future__ import annotations

from types import SimpleNamespace

from edgeintel.pipeline.stages.runtime_results import outage_windows, served_in_windows
from edgeintel.topology import LinkSpec, TracePoint


def _link(*points: tuple[float, float]) -> LinkSpec:
    return LinkSpec(
        bandwidth_mbps=10,
        rtt_ms=5,
        trace=[TracePoint(t_s=t, bandwidth_mbps=bw) for t, bw in points],
    )


def test_outage_windows_merge_and_clip_to_the_run() -> None:
    backhaul = _link((0, 100), (40, 0), (100, 100), (140, 0))
    device = _link((0, 10), (90, 0), (110, 10))
    sc = SimpleNamespace(
        links=[backhaul],
        expand_devices=lambda: [SimpleNamespace(link=device), SimpleNamespace(link=_link())],
    )
    # 40-100 and 90-110 overlap -> 40-110; 140-.. is cut at the 150 s horizon
    assert outage_windows(sc, 150.0) == [(40.0, 110.0), (140.0, 150.0)]
    assert outage_windows(sc, 30.0) == []


def test_served_in_windows_counts_each_side() -> None:
    results = [  # (trace s, placement, results, correct)
        (10.0, "cloud", 1, 1),
        (40.0, "device", 2, 2),
        (50.0, "edge", 1, 0),
        (90.0, "device", 1, 1),
        (100.0, "cloud", 1, 1),  # the window is [40, 100)
    ]
    out = served_in_windows(results, [(40.0, 100.0)])
    assert out["windows_trace_s"] == [[40.0, 100.0]]
    assert out["during"] == {
        "results": 4,
        "by_placement": {"device": 3, "edge": 1},
        "accuracy": 0.75,
    }
    assert out["outside"] == {"results": 2, "by_placement": {"cloud": 2}, "accuracy": 1.0}
    assert served_in_windows([], [(0.0, 1.0)])["during"]["accuracy"] is None
