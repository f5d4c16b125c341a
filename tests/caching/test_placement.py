"""Placement: a hand-worked greedy, capacities, greedy vs MILP vs LP bound, delivery counts."""

from __future__ import annotations

import numpy as np
import pytest

from edgeintel.caching.placement import (
    Delivery,
    choose_models,
    evaluate_delivery,
    evaluate_tiered_delivery,
    greedy_placement,
    lp_placement,
    popularity_placement,
    tiered_placement,
    zipf_demand,
)
from edgeintel.errors import ConfigError, DataError


def test_greedy_hand_worked_with_cooperation() -> None:
    # two neighbouring stations, one slot each; savings: local 95 ms, neighbour 80 ms
    demand = np.array([[10.0, 0.0], [9.0, 5.0]])
    p = greedy_placement(demand, [1, 1], [[1], [0]])
    # (s0, item0): 10*95 + 9*80 = 1670 first; then s1: item0 adds 9*15 = 135 < item1 5*95 = 475
    assert [c.tolist() for c in p.cached] == [[0], [1]]
    assert p.value == pytest.approx(1670 + 475)
    # without cooperation s1 keeps its own most valuable item (item0: 9*95 > 5*95)
    alone = greedy_placement(demand, [1, 1], None)
    assert [c.tolist() for c in alone.cached] == [[0], [0]]


@pytest.mark.parametrize("seed", range(3))
def test_capacities_and_bounds(seed: int) -> None:
    demand, _ = zipf_demand(4, 30, 0.8, 400, locality=0.5, seed=seed)
    cap = [3, 5, 0, 4]
    nb = [[1, 3], [0, 2], [1, 3], [2, 0]]
    g = greedy_placement(demand, cap, nb)
    exact = lp_placement(demand, cap, nb, integral=True)
    lp = lp_placement(demand, cap, nb)
    for p in (g, exact):
        assert all(len(c) <= k for c, k in zip(p.cached, cap, strict=True))
        assert all(len(set(c.tolist())) == len(c) for c in p.cached)
    assert g.value <= exact.value + 1e-6 <= lp.value + 1e-3
    assert g.value >= exact.value / 2  # FemtoCaching's factor-2 guarantee
    # the greedy's reported value is the objective of its placement
    assert exact.value == pytest.approx(
        lp_placement(demand, cap, nb, integral=True).value, rel=1e-9
    )


def test_delivery_counts() -> None:
    g = greedy_placement(np.array([[5.0, 1.0, 0.0], [0.0, 1.0, 5.0]]), [1, 1], [[1], [0]])
    traces = [np.array([0, 0, 1, 2]), np.array([2, 1])]
    coop = evaluate_delivery(g, traces, 100, [[1], [0]], Delivery(1, 10, 100))
    assert (coop.local_hits, coop.neighbour_hits, coop.cloud_fetches) == (3, 1, 2)
    assert coop.backhaul_bytes == 200
    assert coop.mean_latency_ms == pytest.approx((3 * 1 + 10 + 2 * 100) / 6)
    single = evaluate_delivery(g, traces, 100, None, Delivery(1, 10, 100))
    assert single.neighbour_hits == 0 and single.cloud_fetches == 3
    pop = popularity_placement(np.array([[5.0, 1.0, 0.0], [0.0, 1.0, 5.0]]), [1, 1])
    assert [c.tolist() for c in pop.cached] == [[0], [2]]


def test_choose_models_knapsack() -> None:
    # 100 MB: {0, 2} saves 10*50 + 6*40 = 740 > {1} 12*60 = 720
    assert choose_models([60, 90, 40], [10, 12, 6], [50, 60, 40], 100).tolist() == [0, 2]


def test_bad_inputs() -> None:
    with pytest.raises(ConfigError, match="capacities must be >= 0"):
        greedy_placement(np.ones((2, 3)), [1, -1])
    with pytest.raises(DataError, match="non-empty"):
        greedy_placement(np.ones((0, 3)), [])
    with pytest.raises(ConfigError, match="local_ms <= neighbour_ms <= cloud_ms"):
        Delivery(10, 5, 100)
    g = greedy_placement(np.ones((1, 2)), [1])
    with pytest.raises(DataError, match="empty"):
        evaluate_delivery(g, [np.array([], dtype=np.int64)], 1)
    with pytest.raises(ConfigError, match="memory"):
        choose_models([1], [1], [1], 0)


def test_tiered_placement_hand_worked() -> None:
    # devices d0, d1 at station 0 and d2 at station 1; stations are neighbours, 1 slot each
    demand = np.array([[6.0, 2.0, 0.0], [3.0, 0.0, 1.0], [0.0, 4.0, 5.0]])
    at = [0, 0, 1]
    p = tiered_placement(demand, [1, 0, 1], at, [1, 1], [[1], [0]])
    # device tier: d0 keeps item 0 (6 requests), d1 has no cache, d2 keeps item 2 (5)
    assert [c.tolist() for c in p.devices.cached] == [[0], [], [2]]
    assert p.devices.value == pytest.approx(11 * 100)  # cloud_ms - device_ms per request
    # residual station demand: s0 = [3, 2, 1], s1 = [0, 4, 0]; savings local 95, neighbour 80:
    # (s1, item1) 4*95 + 2*80 = 540 first; then s0: item0 3*95 = 285 > item1 2*(95-80) = 30
    assert [c.tolist() for c in p.stations.cached] == [[0], [1]]
    assert p.stations.value == pytest.approx(540 + 285)
    traces = [np.array([0, 0, 1]), np.array([0, 2]), np.array([2, 1, 1])]
    own, rep = evaluate_tiered_delivery(p, traces, at, 100, [[1], [0]])
    # own: d0's two 0s, d2's 2; station 0 serves d1's 0; station 1 d2's two 1s;
    # d0's 1 comes from neighbour s1; d1's 2 from the cloud
    assert (own, rep.local_hits, rep.neighbour_hits, rep.cloud_fetches) == (3, 3, 1, 1)
    assert rep.requests == 8 and rep.backhaul_bytes == 100
    assert rep.mean_latency_ms == pytest.approx((3 * 0 + 3 * 5 + 20 + 100) / 8)
    # no device caches: the same stations see the whole demand, and the cloud serves more
    p0 = tiered_placement(demand, [0, 0, 0], at, [1, 1], [[1], [0]])
    _, rep0 = evaluate_tiered_delivery(p0, traces, at, 100, [[1], [0]])
    assert rep0.mean_latency_ms > rep.mean_latency_ms


def test_tiered_bad_inputs() -> None:
    with pytest.raises(ConfigError, match="device_ms <= local_ms"):
        Delivery(10, 20, 100, device_ms=15)
    with pytest.raises(ConfigError, match="device stations"):
        tiered_placement(np.ones((2, 3)), [1, 1], [0, 2], [1, 1])
    with pytest.raises(ConfigError, match="device cache capacities"):
        tiered_placement(np.ones((2, 3)), [1, -1], [0, 1], [1, 1])


def test_device_profile_cache_mb() -> None:
    from pydantic import ValidationError

    from edgeintel.topology import DeviceProfile

    base = dict(
        compute_speed=1.0,
        memory_mb=512,
        power_compute_w=2,
        power_tx_w=1,
        power_idle_w=0.1,
        battery_j=1000,
    )
    assert DeviceProfile(**base).cache_mb == 0.0  # no device cache unless configured
    assert DeviceProfile(**base, cache_mb=64).cache_mb == 64
    with pytest.raises(ValidationError, match="cache_mb"):
        DeviceProfile(**base, cache_mb=-1)
