"""The fast core against the SimPy reference (identical per-task records), determinism by seed,
and exact event traces worked by hand."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgeintel.offloading.settings import D2DLink
from edgeintel.scenario import Scenario
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


ENGINES = ["fast", "python", "simpy"]
"""``fast`` runs the compiled kernel here (numba is in the dev install: checked below)."""


@pytest.mark.parametrize("engine", ["fast", "python"])
@pytest.mark.parametrize(("decisions", "cache"), [("epoch", "lru"), ("task", "fifo")])
def test_fast_core_reproduces_simpy_exactly(engine: str, decisions: str, cache: str) -> None:
    sc = busy_scenario()
    st = sc.settings.sim.model_copy(  # type: ignore[union-attr]
        update={"decisions": decisions, "cache_policy": cache}
    )
    model = build_model(sc, st)
    fast = Simulation(model, engine=engine).run()  # type: ignore[arg-type]
    assert fast.extra["kernel"] == ("compiled" if engine == "fast" else "python")
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
    assert max(fast.series["edge_queue"]) > st.max_batch  # batches taken from a real queue
    assert s["dropped_battery"] > 0  # the tablets run flat
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
    """Edge for every task except the fifth decision (local)."""

    def __init__(self) -> None:
        self.n = 0

    def decide(self, observation: Observation) -> int:
        self.n += 1
        return 0 if self.n == 5 else 1


def _hand_model():  # type: ignore[no-untyped-def]
    sc = hand_scenario()
    model = build_model(sc)
    t = np.array([0.5, 1, 2, 3, 5, 30]) * MS
    return dataclasses.replace(
        model,
        task_t=t.astype(np.int64),
        task_dev=np.array([0, 1, 1, 0, 0, 1], dtype=np.int32),
        task_skip=np.zeros(6, dtype=bool),
        task_key=np.array([1, 2, 3, 4, 5, 1], dtype=np.int32),
        task_u=np.full(6, 0.5),
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_event_trace_worked_by_hand(engine: str) -> None:
    """10 kB up: 10 ms at the device's 8 Mbit/s; the one 16 Mbit/s cell serves transfers in
    arrival order, 5 ms each, and a transfer ends at max(arrival + 10 ms, cell finish). Then
    half the RTT: 1 ms (device a) or 2 ms (b). A task costs 10 ms / 0.5 = 20 ms on the one
    worker, a batch of two (1 + 0.5) x 20 = 30 ms; 1 kB back at 8 Mbit/s = 1 ms + half RTT.

    task 0 (a, 0.5 ms, key 1): cell 0.5-5.5, sent 10.5, station 11.5, batch 11.5-31.5, 33.5
    task 1 (b, 1 ms):  cell 5.5-10.5, sent 11, station 13, waits
    task 2 (b, 2 ms):  cell 10.5-15.5, sent 15.5, station 17.5, waits
    task 3 (a, 3 ms):  cell 15.5-20.5, sent 20.5 (the cell is the bottleneck), station 21.5
    31.5: tasks 1 and 2 batched 31.5-61.5, back at 64.5; task 3 alone 61.5-81.5, back 83.5
    task 4 (a, 5 ms):  local, 10 ms / 0.5 = 20 ms: 25 ms
    task 5 (b, 30 ms, key 1): cell 30-35, sent 40, station 42: key 1 cached at 31.5: 45
    """
    model = _hand_model()
    res = Simulation(model, policy=_Script(), engine=engine).run()
    r = res.records
    lat_ms = (r["done"] - r["t_arr"]) / MS
    np.testing.assert_allclose(lat_ms, [33.0, 63.5, 62.5, 80.5, 20.0, 15.0], rtol=0, atol=1e-9)
    assert r["place"].tolist() == [1, 1, 1, 1, 0, 1]
    assert r["hit"].tolist() == [False, False, False, False, False, True]
    # energy (uJ): 1 W x 10 ms sending + 0.1 W x the rest of the latency; local 2 W x 20 ms
    assert r["energy"].tolist() == [12_300, 15_350, 15_250, 17_050, 40_000, 10_500]
    s = res.summary()
    assert s["bytes_device_to_edge"] == 5 * 10_000 and s["bytes_edge_to_device"] == 5 * 1_000
    assert s["cache_hits"] == 1 and s["cache_lookups"] == 5


@pytest.mark.parametrize("engine", ENGINES)
def test_cloud_path_worked_by_hand(engine: str) -> None:
    """As above to the station (10 ms sending, 5 ms of the cell each), then the 10 Mbit/s
    backhaul FIFO (10 kB = 8 ms) and half its 10 ms RTT to the cloud (speed 4: 2.5 ms, 64
    workers); back: 5 ms + 1 kB at 10 Mbit/s (0.8 ms) + the device's way back (2 or 3 ms).

    task 0 (a, 0.5 ms, key 7): station 11.5, backhaul 11.5-19.5, cloud 24.5-27, 34.8
    task 1 (b, 1 ms, key 8): station 13, backhaul waits: 19.5-27.5, cloud 32.5-35, 43.8
    task 2 (a, 2 ms, key 7): station 16.5 (key 7 not cached before 27): backhaul 27.5-35.5,
                             cloud 40.5-43, 50.8
    task 3 (b, 40 ms, key 7): cell 40-45, sent 50, station 52: cached, 55
    """
    model = dataclasses.replace(
        build_model(hand_scenario(backhaul_mbps=10)),
        task_t=(np.array([0.5, 1, 2, 40]) * MS).astype(np.int64),
        task_dev=np.array([0, 1, 0, 1], dtype=np.int32),
        task_skip=np.zeros(4, dtype=bool),
        task_key=np.array([7, 8, 7, 7], dtype=np.int32),
        task_u=np.full(4, 0.5),
    )
    res = Simulation(model, policy=FixedPolicy("cloud"), engine=engine).run()
    r = res.records
    lat_ms = (r["done"] - r["t_arr"]) / MS
    np.testing.assert_allclose(lat_ms, [34.3, 42.8, 48.8, 15.0], rtol=0, atol=1e-9)
    assert r["place"].tolist() == [2, 2, 2, 2]
    assert r["hit"].tolist() == [False, False, False, True]
    assert r["energy"].tolist() == [12_430, 13_280, 13_880, 10_500]
    s = res.summary()
    assert (s["bytes_edge_to_cloud"], s["bytes_cloud_to_edge"]) == (30_000, 3_000)


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


@pytest.mark.parametrize("engine", ENGINES)
def test_federated_round_worked_by_hand(engine: str) -> None:
    """Both devices train in the round at 0.5 s. Each exchange (``network.Exchange``): 200 kB
    down and up over the 8 Mbit/s access link (0.2 s + RTT) and the 100 Mbit/s backhaul
    (0.016 s + 10 ms), and 2000 ms / 0.5 = 4 s of training: a: 2 x 0.228 + 4 = 4.456 s,
    b (RTT 4 ms): 2 x 0.230 + 4 = 4.460 s. With a 4.458 s deadline b is a straggler.
    Energy each: 2 W x 4 s + 1 W x 0.2 s upload = 8.2 J."""
    sc = hand_scenario()
    st = sc.settings.sim.model_copy(  # type: ignore[union-attr]
        update={
            "federated": {
                "enabled": True,
                "round_interval_s": 0.5,
                "clients_per_round": 2,
                "deadline_s": 4.458,
            }
        }
    )
    st = type(st).model_validate(st.model_dump())
    res = Simulation(build_model(sc, st), policy=FixedPolicy("local"), engine=engine).run()
    assert res.rounds == [
        {
            "round": 1,
            "t_s": 0.5,
            "clients": 2,
            "aggregated": 1,
            "stragglers": 1,
            "dropouts": 0,
            "duration_s": 4.458,
        }
    ]
    assert res.extra["fl_energy_uj"] == 2 * 8_200_000
    assert res.traffic == {
        "device_to_edge": 400_000,
        "edge_to_device": 400_000,
        "edge_to_cloud": 400_000,
        "cloud_to_edge": 400_000,
    }


class _Slots:
    """Plays back a list of slots, one per decision (then local)."""

    def __init__(self, slots: list[int]) -> None:
        self.slots = list(slots)

    def decide(self, observation: Observation) -> int:
        return self.slots.pop(0) if self.slots else 0


def _with_d2d(sc: Scenario, mbps: float, rtt_ms: float) -> Scenario:
    """``sc`` with a D2D link between devices attached to the same node."""
    off = sc.settings.offloading.model_copy(update={"d2d": D2DLink(bandwidth_mbps=mbps,
                                                                    rtt_ms=rtt_ms)})  # fmt: skip
    return sc.model_copy(update={"settings": sc.settings.model_copy(update={"offloading": off})})


def _d2d_model():  # type: ignore[no-untyped-def]
    sc = _with_d2d(hand_scenario(), 80, 2)
    model = build_model(sc)
    t = np.array([0.5, 1, 2, 3]) * MS
    return dataclasses.replace(
        model,
        task_t=t.astype(np.int64),
        task_dev=np.array([0, 1, 1, 0], dtype=np.int32),
        task_skip=np.zeros(4, dtype=bool),
        task_key=np.array([1, 2, 3, 4], dtype=np.int32),
        task_u=np.full(4, 0.5),
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_d2d_runs_on_the_neighbour_worked_by_hand(engine: str) -> None:
    """D2D at 80 Mbit/s, RTT 2 ms: 10 kB over in 1 ms + 1 ms half RTT; the helper's CPU runs
    it (10 ms / 0.5 = 20 ms) in FIFO order with its own tasks; 1 kB back: 0.1 ms + 1 ms.

    task 0 (a -> b, 0.5 ms): at b 2.5, b runs its own task 2 first (2-22): 22-42, back 43.1
    task 1 (b -> a, 1 ms):   at a 3, runs 3-23, back 24.1: 23.1 ms
    task 2 (b local, 2 ms):  b's CPU 2-22: 20 ms
    task 3 (a -> b, 3 ms):   at b 5, after task 0: 42-62, back 63.1: 60.1 ms
    Energy (uJ): 1 W x 1 ms sending + 0.1 W x the rest, plus the helper's 2 W x 20 ms."""
    model = _d2d_model()
    assert model.helper.tolist() == [1, 0]
    res = Simulation(model, policy=_Slots([3, 3, 0, 3]), engine=engine).run()  # type: ignore[arg-type]
    r = res.records
    np.testing.assert_allclose((r["done"] - r["t_arr"]) / MS, [42.6, 23.1, 20.0, 60.1], atol=1e-9)
    assert r["place"].tolist() == [3, 3, 0, 3] and r["bs"].tolist() == [-1] * 4
    assert r["energy"].tolist() == [45_160, 43_210, 40_000, 46_910]
    s = res.summary()
    assert s["completed_d2d"] == 3 and s["bytes_device_to_edge"] == 0
    assert s["bytes_d2d"] == 3 * 11_000


def test_d2d_off_without_a_d2d_link() -> None:
    model = dataclasses.replace(_d2d_model(), helper=np.zeros(0, dtype=np.int64), d2d=None)
    res = Simulation(model, policy=_Slots([3, 3, 0, 3]), engine="fast").run()
    assert res.records["place"].tolist() == [0, 0, 0, 0]  # unreachable slot: local
    assert res.counters["invalid_actions"] == 3


class _Cycle:
    """Every available slot in turn: D2D, edge, cloud and local under contention."""

    def __init__(self) -> None:
        self.n = 0

    def decide(self, observation: Observation) -> int:
        self.n += 1
        ok = [i for i, o in enumerate(observation.options) if o is not None]
        return ok[self.n % len(ok)]


@pytest.mark.parametrize("engine", ["fast", "python"])
def test_d2d_engines_agree_under_contention(engine: str) -> None:
    sc = _with_d2d(busy_scenario(), 20, 3)
    st = sc.settings.sim.model_copy(update={"decisions": "task"})  # type: ignore[union-attr]
    model = build_model(sc, st)
    a = Simulation(model, policy=_Cycle(), engine=engine).run()  # type: ignore[arg-type]
    b = Simulation(model, policy=_Cycle(), engine="simpy").run()
    _records_equal(a.records, b.records)
    assert np.count_nonzero(a.records["place"] == 3) > 50


@pytest.mark.parametrize("engine", ENGINES)
def test_alerts_jump_the_server_queue_worked_by_hand(engine: str) -> None:
    """The trace of ``test_event_trace_worked_by_hand`` with task 3 an alert: at 31.5 ms the
    one worker finds [1, 2, 3] waiting and takes the alert first: batch (3, 1) 31.5-61.5
    (task 3 back at 63.5: 60.5 ms; task 1 at 64.5: 63.5 ms), then task 2 alone 61.5-81.5,
    back at 84.5: 82.5 ms (it was 62.5 without the alert)."""
    model = dataclasses.replace(
        _hand_model(), task_alert=np.array([False, False, False, True, False, False])
    )
    res = Simulation(model, policy=_Script(), engine=engine).run()  # type: ignore[arg-type]
    r = res.records
    np.testing.assert_allclose(
        (r["done"] - r["t_arr"]) / MS, [33.0, 63.5, 82.5, 60.5, 20.0, 15.0], atol=1e-9
    )
    assert res.summary()["alert_latency_p50_s"] == pytest.approx(0.0605)


@pytest.mark.parametrize("engine", ["fast", "python"])
def test_alert_priority_engines_agree_under_contention(engine: str) -> None:
    model = build_model(busy_scenario())
    rng = np.random.default_rng(0)
    model = dataclasses.replace(model, task_alert=rng.random(model.num_tasks) < 0.3)
    a = Simulation(model, engine=engine).run()  # type: ignore[arg-type]
    b = Simulation(model, engine="simpy").run()
    _records_equal(a.records, b.records)
    assert max(a.series["edge_queue"]) > 2  # alerts overtook real queues
