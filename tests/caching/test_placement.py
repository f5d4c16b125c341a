"""Placement: a hand-worked greedy, capacities, greedy vs MILP vs LP bound, delivery counts."""

from __future__ import annotations

import numpy as np
import pytest

from edgeintel.caching.placement import (
    Delivery,
    choose_models,
    evaluate_delivery,
    greedy_placement,
    lp_placement,
    popularity_placement,
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
