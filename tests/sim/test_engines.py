"""The fast core against the SimPy reference (identical per-task records), determinism by seed,
and exact event traces worked by hand."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgeintel.sim import FixedPolicy, Simulation, build_model, simulate
from edgeintel.sim.policy import Observation
from edgeintel.sim.result import RECORD_FIELDS
from edgeintel.sim.settings import SimSettings

from .conftest import busy_scenario, hand_scenario

pytest.importorskip("simpy")

MS = 1_000_000  # ns


def _records_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    for name in RECORD_FIELDS:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.mark.parametrize("decisions", ["epoch", "task"])
def test_fast_core_reproduces_simpy_exactly(decisions: str) -> None:
    sc = busy_scenario()
    st = sc.settings.sim.model_copy(update={"decisions": decisions})  # type: ignore[union-attr]
    model = build_model(sc, st)
    fast = Simulation(model, engine="fast").run()
    ref = Simulation(model, engine="simpy").run()
    _records_equal(fast.records, ref.records)
    sf, sr = fast.summary(), ref.summary()
    for key in sf:
        if key not in ("cpu_s", "wall_s", "events_per_cpu_s"):
            assert sf[key] == sr[key] or (sf[key] != sf[key] and sr[key] != sr[key]), key
    assert fast.series == ref.series and fast.rounds == ref.rounds
    # the scenario exercises what it claims to
    s = sf
    assert s["handovers"] > 0 and s["cache_hits"] > 0 and s["fl_rounds"] == 3
    assert s["completed_local"] > 0 and s["completed_edge"] > 0 and s["completed_cloud"] > 0
    assert s["dropped_outage"] + s["fl_dropouts"] > 0
    assert (fast.records["attempts"] > 1).any()  # losses retransmitted
    assert model.offered_tasks > model.num_tasks  # off periods removed tasks


def test_same_seed_is_bit_identical_and_seed_matters() -> None:
    sc = busy_scenario()
    a = simulate(sc)
    b = simulate(sc)
    assert a.digest() == b.digest()
    assert a.to_json()["summary"]["tasks"] == b.to_json()["summary"]["tasks"]
    c = simulate(sc, seed=sc.seed + 1)
    assert c.digest() != a.digest()


class _Script:
    """Edge for every task except the sixth (local)."""

    def __init__(self) -> None:
        self.n = 0

    def decide(self, observation: Observation) -> int:
        self.n += 1
        return 0 if self.n == 6 else 1


def _hand_model():  # type: ignore[no-untyped-def]
    sc = hand_scenario()
    model = build_model(sc)
    t = np.array([0.5, 1, 2, 3, 4, 5]) * MS
    return dataclasses.replace(
        model,
        task_t=t.astype(np.int64),
        task_dev=np.array([0, 1, 1, 0, 1, 0], dtype=np.int32),
        task_skip=np.zeros(6, dtype=bool),
        task_key=np.array([1, 2, 3, 4, 1, 5], dtype=np.int32),
        task_u=np.full(6, 0.5),
    )


@pytest.mark.parametrize("engine", ["fast", "simpy"])
def test_event_trace_worked_by_hand(engine: str) -> None:
    """Upload 10 kB at min(8, 16) Mbit/s = 10 ms through the one cell (FIFO), half RTT 1 ms
    (device a) or 2 ms (b) to the station; a task costs 10 ms / 0.5 = 20 ms on the one
    worker, a batch of two (1 + 0.5) x 20 = 30 ms; 1 kB back at 8 Mbit/s = 1 ms + half RTT.

    task 0 (a, 0.5 ms, key 1): cell 0.5-10.5, station 11.5, batch 11.5-31.5, back 33.5
    task 1 (b, 1 ms):   cell 10.5-20.5, station 22.5, waits; batch 31.5-51.5, back 54.5
    task 2 (b, 2 ms):   cell 20.5-30.5, station 32.5, waits
    task 3 (a, 3 ms):   cell 30.5-40.5, station 41.5, waits; 2 and 3 batched 51.5-81.5,
                        back 84.5 (b) and 83.5 (a)
    task 4 (b, 4 ms, key 1): cell 40.5-50.5, station 52.5: key 1 cached at 31.5, hit, 55.5
    task 5 (a, 5 ms):   local, 10 ms / 0.5 = 20 ms: 25 ms
    """
    model = _hand_model()
    res = Simulation(model, policy=_Script(), engine=engine).run()
    r = res.records
    lat_ms = (r["done"] - r["t_arr"]) / MS
    np.testing.assert_allclose(lat_ms, [33.0, 53.5, 82.5, 80.5, 51.5, 20.0], rtol=0, atol=1e-9)
    assert r["place"].tolist() == [1, 1, 1, 1, 1, 0]
    assert r["hit"].tolist() == [False, False, False, False, True, False]
    # energy (uJ): 1 W x 10 ms upload + 0.1 W x the rest of the latency; local 2 W x 20 ms
    assert r["energy"].tolist() == [12_300, 14_350, 17_250, 17_050, 14_150, 40_000]
    s = res.summary()
    assert s["bytes_device_to_edge"] == 5 * 10_000 and s["bytes_edge_to_device"] == 5 * 1_000
    assert s["cache_hits"] == 1 and s["cache_lookups"] == 5


def test_fixed_policies_give_the_baselines() -> None:
    sc = busy_scenario()
    model = build_model(sc)
    res = Simulation(model, policy=FixedPolicy("local")).run()
    local = res.summary()
    assert local["completed"] == local["completed_local"] > 0
    # only the federated rounds' updates go up
    assert local["bytes_device_to_edge"] == res.traffic["device_to_edge"] > 0
    cloud = Simulation(model, policy=FixedPolicy("cloud")).run().summary()
    assert cloud["completed_cloud"] > 0 and cloud["completed_edge"] == 0


def test_settings_change_the_outcome() -> None:
    """No filter: more tasks run; slower servers: higher latency (the knobs are wired)."""
    sc = hand_scenario()
    base = SimSettings(duration_s=20, traces={"speed_sigma": 0, "bandwidth_sigma": 0})
    a = simulate(sc, base).summary()
    b = simulate(sc, base.model_copy(update={"filter": False})).summary()
    assert b["skipped"] == 0 < a["skipped"]
    slow = simulate(sc, base.model_copy(update={"task_ms": 200.0})).summary()
    assert slow["latency_p50_s"] > a["latency_p50_s"]
