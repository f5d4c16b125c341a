"""The network model: hand-computed transfer times and bytes per tier."""

from __future__ import annotations

import math

import pytest

from edgeintel.network import TIERS, Exchange, Hop, Traffic, hop_at, path_s, transfer_s
from edgeintel.topology import LinkSpec, TracePoint


def test_transfer_and_path_times_by_hand() -> None:
    # 1 MB over 8 Mbit/s is 1 s of serialisation, plus 10 ms of RTT
    assert transfer_s(1_000_000, Hop(8.0, 10.0)) == pytest.approx(1.01)
    # store-and-forward over 8 Mbit/s (1 s) then 80 Mbit/s (0.1 s), RTTs 10 + 5 ms
    assert path_s(1_000_000, [Hop(8.0, 10.0), Hop(80.0, 5.0)]) == pytest.approx(1.115)
    assert path_s(123, []) == 0.0
    assert transfer_s(1, Hop(0.0, 5.0)) == math.inf  # an outage never delivers


def test_a_traced_link_gives_the_hop_in_force_at_t() -> None:
    trace = [TracePoint(t_s=10, bandwidth_mbps=5), TracePoint(t_s=20, bandwidth_mbps=0, rtt_ms=80)]
    link = LinkSpec(bandwidth_mbps=50, rtt_ms=20, trace=trace)
    assert hop_at(link, 0.0) == Hop(50, 20) and hop_at(link, 15.0) == Hop(5, 20)
    assert hop_at(link, 25.0) == Hop(0, 80)


def test_exchange_is_down_compute_up_over_the_whole_path() -> None:
    access, backhaul = Hop(8.0, 10.0), (Hop(80.0, 5.0),)
    ex = Exchange(down_bytes=1_000_000, up_bytes=100_000, access=access, backhaul=backhaul,
                  compute_s=0.5)  # fmt: skip
    down = 0.010 + 1.0 + 0.005 + 0.1
    up = 0.010 + 0.1 + 0.005 + 0.01
    assert ex.time_s == pytest.approx(down + 0.5 + up)
    assert ex.upload_s == pytest.approx(0.1)  # the device transmits on its access link only
    # an edge server's model exchange with the cloud: no access link, no compute
    edge = Exchange(1_000_000, 1_000_000, backhaul=backhaul)
    assert edge.time_s == pytest.approx(2 * 0.105) and edge.upload_s == 0.0


def test_traffic_counts_each_backhaul_hop() -> None:
    t = Traffic()
    assert set(t.bytes) == set(TIERS) and not any(t.bytes.values())
    one, two = (Hop(100.0),), (Hop(100.0), Hop(50.0))
    t.model_to_edges(400, [one, two, ()])  # the cloud's own devices need no backhaul
    t.model_to_devices(400, 5)
    t.update_from_device(30, relay=two)  # flat: relayed over both hops
    t.update_from_device(30)  # hierarchical: stops at the edge
    t.models_to_cloud(400, [one])
    assert t.bytes == {
        "cloud_to_edge": 400 * 3,
        "edge_to_device": 400 * 5,
        "device_to_edge": 60,
        "edge_to_cloud": 30 * 2 + 400,
    }
