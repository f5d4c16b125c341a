"""The retrain loop as a run setting (``lifecycle.retrain``): a deployed run plays a real
drift (each device's stream goes on with another device's digits), the agents' label-free
monitors alarm, the edge server declares the group due, the run fine-tunes the model by
federated rounds over the drifted devices' feedback labels, signs version 2 and rolls it
out through a canary; the report lists the drift, the retrain and the rollout stages."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_deployed, tiny_scenario_dict


@pytest.mark.slow
def test_run_retrains_on_drift_and_rolls_out(tmp_path: Path) -> None:
    sc = tiny_scenario_dict()
    sc["data"]["max_samples"] = 800
    sc["data"]["partition"] = {"kind": "dirichlet", "alpha": 0.2}  # devices see other digits
    sc["settings"]["training"]["epochs"] = 15
    sc["settings"]["caching"] = {"enabled": False}
    sc["settings"]["runtime"] = {
        "rate_hz": 25,
        "deploy": {
            "enabled": True, "duration_s": 16, "drain_timeout_s": 20, "tls": False,
            "lifecycle": {"retrain": {
                "on_drift": True, "shift_at_s": 4, "reference": 80, "window": 40,
                "stride": 10, "false_alarms_per_hour": 30, "fresh_inputs": 150, "rounds": 3,
                "min_results": 15,
            }},
        },
    }  # fmt: skip
    run, rt = run_deployed(tmp_path, sc)
    re = rt["lifecycle"]["retrain"]
    assert "error" not in re, re
    # the played drift was noticed by the devices and declared due at the edge server
    assert re["triggers"] and re["triggers"][0]["group"] == "phone", re["triggers"]
    assert re["drift"]["micro-1"]["groups"]["phone"]["alarms"] >= 2
    events = [e["event"] for e in re["events"]]
    assert events[:3] == ["retrain.started", "retrain.done", "rollout.started"], re["events"]
    done = re["events"][1]
    assert done["version"] == "2" and done["rounds"] == 3
    # version 2, signed, was canaried and promoted by the node's guards; devices run it
    first = re["rollouts"][0]
    assert first["version"] == "2" and first["state"] == "promoted", first
    assert next(t["event"] for t in first["timeline"]) == "stage"
    assert (run / "runtime" / "repo" / "model" / "2" / "model.onnx.sig").is_file()
    assert set(rt["lifecycle"]["final_versions"].values()) >= {"2"}
    assert rt["delivered"] == rt["produced"] and rt["kept_on_devices"] == 0
    report = (run / "report.html").read_text()
    assert "Retrain loop" in report and "Rollout stages of the retrained versions" in report
