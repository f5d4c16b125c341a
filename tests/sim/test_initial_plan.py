"""The simulator's initial plan: cell uplinks are capacities of the fleet problem."""

from __future__ import annotations

import numpy as np
import pytest

from edgeintel.sim import Simulation, build_model
from edgeintel.sim.model import SimModel

from .conftest import hand_scenario

UPLINK_MS = 10_000 * 8 / 16_000  # hand_scenario: input_bytes over the 16 Mbit/s cell = 5 ms


def _model(n: int, placement: str, device_speed: float = 0.05) -> SimModel:
    """``hand_scenario`` with slow devices (local 10 ms / 0.05 = 200 ms: offloading pays) and
    ``n`` devices at 2 Hz split between groups ``a`` and ``b``, both on cell ``bs``."""
    sc = hand_scenario(device_speed=device_speed)
    st = sc.settings.sim
    assert st is not None
    upd = {"devices": n, "task_rate_hz": 2.0, "duration_s": 1.0, "placement": placement}
    return build_model(sc, st.model_copy(update=upd))


@pytest.mark.parametrize("placement", ["greedy", "milp", "brute_force"])
def test_plan_offloads_only_what_the_cell_uplink_carries(placement: str) -> None:
    # 2 devices: the cell is nearly idle, both groups go to the cloud
    few = _model(2, placement).initial_plan
    assert set(few["groups"].values()) == {"d2c:cloud"}
    assert few["utilization"]["uplink:bs"] == pytest.approx(2 * 2.0 * UPLINK_MS / 1000)
    # 120 devices: one group alone loads the cell to ~0.6, both would be ~1.2 > 0.9
    m = _model(120, placement)
    plan = m.initial_plan
    counts = np.bincount(m.dev_group, minlength=2)
    assert sorted(plan["groups"].values()) == ["d2c:cloud", "local"]
    off = 0 if plan["groups"]["group:a"] == "d2c:cloud" else 1
    assert plan["utilization"]["uplink:bs"] == pytest.approx(
        counts[off] * 2.0 * UPLINK_MS / 1000, abs=1e-6
    )
    assert plan["within_capacity"]
    # 400 devices: either group alone would saturate the cell: everything stays local
    many = _model(400, placement).initial_plan
    assert set(many["groups"].values()) == {"local"}
    assert many["utilization"]["uplink:bs"] == 0.0 and many["within_capacity"]


def test_within_capacity_counts_the_uplinks() -> None:
    """Devices too slow to run locally (2 s a task at 2 Hz): the greedy falls back to the
    cheapest option, offloading, which overloads the cell; the record says so."""
    plan = _model(400, "greedy", device_speed=0.005).initial_plan
    assert "local" not in plan["groups"].values()
    assert plan["utilization"]["uplink:bs"] > 0.9
    assert not plan["within_capacity"]


@pytest.mark.parametrize("engine", ["fast", "simpy"])
def test_devices_keep_off_what_the_plan_found_over_capacity(engine: str) -> None:
    """400 devices: offloading either group would saturate the cell, so the record lists
    both offloading options and no device offloads, though each device's own costs (blind
    to the shared uplink) favour the cloud."""
    pytest.importorskip("simpy")
    m = _model(400, "greedy")
    assert m.initial_plan["over_capacity"] == {
        "group:a": ["d2e:bs", "d2c:cloud"],
        "group:b": ["d2e:bs", "d2c:cloud"],
    }
    s = Simulation(m, engine=engine).run().summary()
    assert s["completed"] == s["completed_local"] > 0
