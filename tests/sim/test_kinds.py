"""The simulator with every task kind (classification, regression, anomaly) and D2D on a
shipped scenario: alerts of an anomaly detector counted and never filtered out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeintel.scenario import load_scenario
from edgeintel.sim import SimSettings, Simulation, build_model, simulate

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
SMALL = {"devices": 40, "duration_s": 20.0, "task_ms": 5.0}


@pytest.mark.parametrize(
    ("name", "kind"),
    [("default", "classification"), ("solar_farm", "regression"),
     ("pipeline_monitoring", "anomaly")],
)  # fmt: skip
def test_every_task_kind_runs(name: str, kind: str) -> None:
    sc = load_scenario(SCENARIOS / f"{name}.yaml")
    assert sc.task.kind == kind
    res = simulate(sc, SimSettings(**SMALL))
    s = res.summary()
    assert s["tasks"] > 0 and s["completed"] > 0
    js = res.to_json()
    assert js["task_kind"] == kind
    assert ("alerts" in s) == (kind == "anomaly")  # only an alerting kind counts alerts


def test_alerts_are_counted_and_never_filtered_out() -> None:
    sc = load_scenario(SCENARIOS / "pipeline_monitoring.yaml")
    st = SimSettings(**SMALL, skip_probability=0.9, alert_rate=0.2)
    model = build_model(sc, st)
    res = Simulation(model).run()
    s = res.summary()
    n = model.num_tasks
    assert abs(s["alerts"] - 0.2 * n) < 4 * np.sqrt(0.16 * n)  # binomial, 4 sigma
    assert s["alerts_skipped"] == 0 and s["alerts_completed"] + s["alerts_dropped"] == s["alerts"]
    normal = ~model.task_alert
    assert abs(model.task_skip[normal].mean() - 0.9) < 0.05  # the filter skips the rest
    assert s["alert_latency_p95_s"] > 0
    assert res.to_json()["alerts"] == {"rate": 0.2, "source": "set"}


def test_d2d_scenario_offloads_to_neighbours_on_every_engine() -> None:
    """wearable_d2d: the planner sends work to the phones in the home; the phones' CPUs run
    it, and the engines agree task for task."""
    sc = load_scenario(SCENARIOS / "wearable_d2d.yaml")
    # a 1 ms task at this machine's speed (the scenario's sensor CNN is smaller still): at
    # SMALL's 5 ms micro-1 (0.5x) beats a Pixel 2 class phone (0.056x) and the watches go there
    model = build_model(sc, SimSettings(**{**SMALL, "task_ms": 1.0}))
    fast = Simulation(model, engine="fast").run()
    ref = Simulation(model, engine="simpy").run()
    assert fast.summary()["completed_d2d"] > 0
    for name in ("place", "done", "energy"):
        np.testing.assert_array_equal(fast.records[name], ref.records[name], err_msg=name)
