"""Calibration of the simulator by the real runtime (scenarios/calibration.yaml)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from edgeintel.scenario import load_scenario
from edgeintel.sim.calibrate import (
    CALIBRATION_SCENARIO,
    TOLERANCE,
    Measured,
    _lognormal,
    calibrate,
    calibration_targets,
    measure_runtime,
)


def test_lognormal_fit_and_link_delay_by_hand() -> None:
    med, sigma = _lognormal(2.0, 2.0 * math.exp(1.6448536269514722 * 0.5))
    assert med == 2.0 and sigma == pytest.approx(0.5)
    m = Measured({}, {"g": (2.0, 60.0)}, 3.0, 8.0, 2.0, 400, 182, 156, 29, 0, 0, 0, 10.0)
    # 60 ms RTT + 8 bits x 582 bytes / 2 Mbit/s = 60 + 2.328 ms
    assert m.link_delay_ms("g") == pytest.approx(62.328)


def test_simulated_latency_follows_the_calibrated_parameters() -> None:
    """Without the overhead the simulated offload of the far group is the link + service;
    with it, the median moves by the overhead's median (the parameter is used)."""
    from edgeintel.sim.calibrate import simulated_group_latency_ms

    sc = load_scenario(CALIBRATION_SCENARIO)
    base = sc.settings.sim
    assert base is not None
    s0 = base.model_copy(update={"task_ms": 3.0, "input_bytes": 400, "result_bytes": 182})
    lat0 = simulated_group_latency_ms(sc, s0, "far")
    # 30 ms + 1.6 ms up (400 B at 2 Mbit/s) + 3 ms service + 30 ms + 0.728 ms down
    assert lat0["p50"] == pytest.approx(65.328, abs=0.05)
    s1 = s0.model_copy(update={"request_overhead_ms": 4.0, "request_overhead_sigma": 0.0})
    assert simulated_group_latency_ms(sc, s1, "far")["p50"] == pytest.approx(69.328, abs=0.05)


@pytest.mark.slow
def test_simulator_within_15_percent_of_the_runtime(tmp_path: Path) -> None:
    """`edgeintel run` with real processes on the calibration scenario; the simulator,
    fitted on the near group, predicts the far group's latency p50/p95 and the bytes."""
    sc = load_scenario(CALIBRATION_SCENARIO)
    results = measure_runtime(CALIBRATION_SCENARIO, tmp_path / "runs", "cal")
    rt = results["runtime"]
    assert rt["undelivered"] == 0 and rt["fallbacks"] == 0
    cal = calibrate(results, sc)
    (tmp_path / "calibration.json").write_text(json.dumps(cal.to_json(), indent=1))
    for key, r in cal.ratios.items():
        assert 1 / TOLERANCE <= r <= TOLERANCE, (key, r, cal.to_json())
    targets = calibration_targets(cal)
    assert len(targets) == 4 and all(t["met"] for t in targets)


def test_calibrated_parameters_keep_the_engines_identical() -> None:
    """The overhead draws and forwarded bytes are the same model in both engines."""
    from edgeintel.sim import FixedPolicy, SimSettings, simulate

    sc = load_scenario(CALIBRATION_SCENARIO)
    extra = {"request_overhead_ms": 3.0, "request_overhead_sigma": 0.8, "forward_bytes": 150,
             "forward_ack_bytes": 30, "duration_s": 5.0}  # fmt: skip
    assert sc.settings.sim is not None
    edge = FixedPolicy("edge")
    fast = simulate(sc, sc.settings.sim.model_copy(update={**extra, "engine": "fast"}), policy=edge)
    ref = simulate(sc, sc.settings.sim.model_copy(update={**extra, "engine": "simpy"}), policy=edge)
    assert fast.digest() == ref.digest()
    plain = SimSettings.model_validate({**sc.settings.sim.model_dump(), "duration_s": 5})
    off = simulate(sc, plain, policy=edge)
    s_on, s_off = fast.summary(), off.summary()
    assert s_on["latency_p50_s"] > s_off["latency_p50_s"]  # the overhead is on the path
    done = s_on["completed"]
    assert s_on["bytes_up"] - s_off["bytes_up"] == 150 * done  # every result forwarded once
