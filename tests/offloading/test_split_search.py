"""Split searches (SPLITTERS): min-cut and chain search equal brute force; the decision is fast."""

from __future__ import annotations

import time

import numpy as np
import pytest

from edgeintel.errors import ConfigError
from edgeintel.offloading.costs import LinkState, OffloadObjective, Power
from edgeintel.offloading.graph import LayerGraph, Tensor
from edgeintel.offloading.split_search import (
    LinearCosts,
    MinCutSplitter,
    SplitContext,
    brute_force_split,
    chain_split,
    linear_costs,
    linear_value,
    mincut_split,
    plan_split,
    split_value,
)

from .conftest import random_costs, random_dag


@pytest.mark.parametrize("seed", range(25))
def test_mincut_equals_brute_force_on_random_dags(seed: int) -> None:
    g = random_dag(int(6 + seed % 7), seed, outputs=1 + seed % 3)  # 1-3 model outputs
    lin = random_costs(g, seed)
    best = linear_value(g, lin, brute_force_split(g, lin))
    mask = mincut_split(g, lin)
    assert g.is_valid_cut(mask)
    assert linear_value(g, lin, mask) == pytest.approx(best, rel=1e-6)


@pytest.mark.parametrize("seed", range(10))
def test_chain_search_equals_brute_force_on_chains(seed: int) -> None:
    g = random_dag(10, seed, chain=True, outputs=1 + seed % 2)
    lin = random_costs(g, seed)
    best = linear_value(g, lin, brute_force_split(g, lin))
    assert linear_value(g, lin, chain_split(g, lin)) == pytest.approx(best, rel=1e-9)


def test_mincut_finds_a_non_prefix_cut_the_chain_search_misses() -> None:
    # n0 -> {n1, n2} -> n3: n1 is costly on the device, n2 costly on the server;
    # the best cut runs n0 and n2 on the device, which is no prefix of n0, n1, n2, n3
    g = LayerGraph(
        names=("n0", "n1", "n2", "n3"),
        ops=("Op",) * 4,
        tensors=(
            Tensor("in", 1000, -1, (0,)),
            Tensor("t0", 10, 0, (1, 2)),
            Tensor("t1", 1, 1, (3,)),
            Tensor("t2", 1, 2, (3,)),
            Tensor("out", 1, 3, (), True),
        ),
        input_name="in",
        output_names=("out",),
        input_shape=(1,),
    )
    lin = LinearCosts(
        device=np.array([1.0, 5000.0, 1.0, 100.0]),
        server=np.array([1.0, 1.0, 50.0, 1.0]),
        comm=np.array([1000.0, 10.0, 1.0, 1.0, 0.0]),
        down=np.zeros(5),
        offload=0.0,
    )
    # by hand: {n0, n2}: 1 + 1 (device) + 10 (t0) + 1 (t2) + 1 + 1 (server) = 15
    mask = mincut_split(g, lin)
    assert mask.tolist() == [True, False, True, False]
    assert linear_value(g, lin, mask) == pytest.approx(15.0)
    # best prefix {n0}: 1 + 10 + 1 + 50 + 1 = 63
    assert linear_value(g, lin, chain_split(g, lin)) == pytest.approx(63.0)
    assert linear_value(g, lin, brute_force_split(g, lin)) == pytest.approx(15.0)


def test_linear_costs_reproduce_the_direct_objective() -> None:
    g = random_dag(9, 3, outputs=2)
    rng = np.random.default_rng(0)
    for objective in OffloadObjective:
        ctx = SplitContext(
            device_ms=rng.uniform(1, 5, g.num_nodes),
            server_ms=rng.uniform(0.1, 1, g.num_nodes),
            link=LinkState(5.0, 12.0, 20.0),
            power=Power(3.0, 1.5, 0.3),
            queue_ms=2.0,
            serialize_ms_per_mb=0.5,
            int8=objective is OffloadObjective.ENERGY,
            objective=objective,
            latency_weight=0.3,
        )
        lin = linear_costs(g, ctx)
        for k in range(g.num_nodes + 1):
            m = g.prefix_mask(k)
            assert linear_value(g, lin, m) == pytest.approx(split_value(g, ctx, m), rel=1e-9)


def test_link_down_means_local_and_deadline_is_respected() -> None:
    g = random_dag(8, 1)
    ctx = SplitContext(
        device_ms=np.full(g.num_nodes, 10.0),
        server_ms=np.full(g.num_nodes, 1.0),
        link=LinkState(0.0, 10.0),
        power=Power(2.0, 1.0, 0.1),
    )
    d = plan_split(g, ctx)
    assert d.kind == "local"
    with pytest.raises(ConfigError, match="down"):
        linear_costs(g, ctx)
    # energy objective under a deadline: the cheapest split that meets the deadline
    up = SplitContext(
        device_ms=np.full(g.num_nodes, 10.0),
        server_ms=np.full(g.num_nodes, 1.0),
        link=LinkState(100.0, 1.0),
        power=Power(0.1, 5.0, 0.0),
        objective=OffloadObjective.ENERGY,
    )
    free = plan_split(g, up)
    assert free.kind == "local"  # computing is cheap for this device, sending is not
    tight = plan_split(g, up, deadline_ms=free.breakdown.latency_ms * 0.8)
    assert tight.meets_deadline and tight.kind != "local"


def test_mincut_decision_on_a_2000_node_dag_is_fast() -> None:
    g = random_dag(2000, 7)
    lin = random_costs(g, 7)
    part = MinCutSplitter(g)
    part.decide(lin)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        mask = part.decide(lin)
        times.append(time.perf_counter() - t0)
    assert g.is_valid_cut(mask)
    # the benchmark holds the 5 ms target; a shared test machine gets slack
    assert min(times) < 0.05
