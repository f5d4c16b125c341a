"""The step-by-step API (external decisions), the policy protocol, settings in a scenario,
capability/availability traces and the memory estimate."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from edgeintel.errors import ConfigError
from edgeintel.scenario import parse_scenario
from edgeintel.sim import (
    FEATURES,
    DecisionPolicy,
    PlannerPolicy,
    SimSettings,
    Simulation,
    build_model,
    sample_traces,
    simulate,
)
from edgeintel.sim.settings import TraceSettings
from edgeintel.sim.traces import NEVER, NS

from ..conftest import tiny_scenario_dict
from .conftest import busy_scenario


def test_external_decisions_equal_the_planner_run() -> None:
    sc = busy_scenario()
    model = build_model(sc)
    ref = Simulation(model).run()  # PlannerPolicy inside
    sim = Simulation(model)
    policy = PlannerPolicy(model)
    seen = 0
    obs = sim.next_decision()
    finished_before = -1
    while obs is not None:
        finished = int((sim.records["done"] >= 0).sum())
        assert finished >= finished_before
        finished_before = finished
        assert obs.options[0] is not None and obs.features().shape == (len(FEATURES),)
        sim.decide(policy.decide(obs))
        seen += 1
        obs = sim.next_decision()
    assert sim.finished and sim.next_decision() is None
    assert finished_before > 0  # records were current mid-run, not only at the end
    res = sim.result()
    assert res.digest() == ref.digest()
    assert seen == res.summary()["decisions"] == ref.summary()["decisions"] > 0


def test_decide_needs_a_pending_decision_and_unreachable_runs_locally() -> None:
    model = build_model(busy_scenario())
    sim = Simulation(model)
    with pytest.raises(ConfigError, match="next_decision"):
        sim.decide(0)
    obs = sim.next_decision()
    assert obs is not None
    with pytest.raises(ConfigError, match="decide"):
        sim.next_decision()
    # always ask for an unreachable or nonsensical action: every task runs locally
    sim.decide(7)
    while (obs := sim.next_decision()) is not None:
        sim.decide(-1)
    s = sim.result().summary()
    assert s["invalid_actions"] == s["decisions"] and s["completed"] == s["completed_local"]


def test_planner_is_a_decision_policy_and_simpy_refuses_external_decisions() -> None:
    model = build_model(busy_scenario())
    assert isinstance(PlannerPolicy(model), DecisionPolicy)
    with pytest.raises(ConfigError, match="fast engine"):
        Simulation(model, engine="simpy").next_decision()
    with pytest.raises(ConfigError, match="a seed goes to build_model"):
        Simulation(model, 3)  # type: ignore[arg-type]


def test_sim_slot_in_a_scenario_file_and_policy_names() -> None:
    raw = tiny_scenario_dict()
    raw["settings"]["sim"] = {"devices": 50, "duration_s": 5, "cache_policy": "sieve"}
    sc = parse_scenario(yaml.safe_load(yaml.safe_dump(raw)))
    assert sc.settings.sim is not None and sc.settings.sim.cache_policy == "sieve"
    res = simulate(sc)
    assert res.model.num_devices == 50 and res.summary()["duration_s"] == 5
    raw["settings"]["sim"]["placement"] = "nope"
    with pytest.raises(ConfigError) as err:
        parse_scenario(raw)
    msg = str(err.value)
    assert "settings.sim.placement" in msg and "brute_force, greedy, milp" in msg
    assert "\n" not in msg


def test_sampled_classes_follow_group_counts() -> None:
    sc = busy_scenario()
    st = SimSettings(devices=6000, duration_s=1)
    model = build_model(sc, st)
    share = np.bincount(model.dev_group, minlength=3) / 6000
    np.testing.assert_allclose(share, [6 / 12, 4 / 12, 2 / 12], atol=0.02)


def test_availability_trace_by_hand_and_on_share() -> None:
    from edgeintel.sim.traces import DeviceTraces

    tr = DeviceTraces(
        speed_factor=np.ones(2),
        bandwidth_factor=np.ones(2),
        start_on=np.array([True, False]),
        toggle_ptr=np.array([0, 2, 3]),
        toggle_ns=np.array([10, 20, 5]),
        horizon_ns=100,
    )
    dev = np.array([0, 0, 0, 0, 1, 1])
    t = np.array([0, 10, 15, 20, 4, 5])
    assert tr.available(dev, t).tolist() == [True, False, False, True, False, True]
    assert tr.next_toggle_ns(0, 12) == 20 and tr.next_toggle_ns(1, 5) == NEVER
    big = sample_traces(
        400, TraceSettings(mean_on_s=30, mean_off_s=10), 2000 * NS, np.random.default_rng(1)
    )
    assert abs(big.on_fraction() - 0.75) < 0.03
    assert abs(np.median(big.speed_factor) - 1) < 0.1


def test_fleet_too_large_is_refused_before_allocating() -> None:
    sc = busy_scenario()
    with pytest.raises(ConfigError, match=r"needs an estimated .* is available"):
        build_model(sc, SimSettings(devices=10**7, duration_s=10**6))
