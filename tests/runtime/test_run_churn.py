"""Churn as a scenario setting (``deploy.churn``): during a deployed run one device
reboots (stopped at once, no drain, then a new agent resumes from its store), one joins
late and one leaves; every result produced reaches the edge server exactly once, the
rebooted device's stream indices have no gap, and the report lists the events."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.conftest import run_deployed, tiny_scenario_dict


@pytest.mark.slow
def test_run_plays_churn_and_loses_nothing(tmp_path: Path) -> None:
    sc = tiny_scenario_dict()
    sc["settings"]["caching"] = {"enabled": False}
    sc["settings"]["runtime"] = {
        "rate_hz": 20,
        "deploy": {
            "enabled": True, "duration_s": 6, "drain_timeout_s": 20, "tls": False,
            # version 2 promoted to every device at once, before the reboot
            "lifecycle": {"enabled": True, "after_s": 0.3, "stages": [1.0], "bad_version": False},
            "churn": [
                {"at_s": 2.0, "device": "phone-1", "action": "reboot", "down_s": 1.5},
                {"at_s": 2.0, "device": "phone-2", "action": "join"},
                {"at_s": 3.0, "device": "phone-0", "action": "leave"},
            ],
        },
    }  # fmt: skip
    run, rt = run_deployed(tmp_path, sc)
    churn = rt["churn"]
    assert (churn["joins"], churn["leaves"], churn["reboots"]) == (1, 1, 1), churn
    ev = {e["device"]: e for e in churn["events"]}
    boot = ev["phone-1"]
    assert boot["resumed_at_index"] == boot["index_at_stop"] > 20  # it had run ~2 s at 20/s
    assert boot["version_after"] == boot["version_before"] == "2"  # its version is kept
    assert rt["lifecycle"]["final_versions"]["phone-1"] == "2"
    # never lost: everything produced was delivered once, nothing left in a store
    assert rt["delivered"] == rt["produced"] and rt["kept_on_devices"] == 0
    db = sqlite3.connect(run / "runtime" / "micro-1.sink.db")
    rows = db.execute("SELECT device, key FROM results").fetchall()
    db.close()
    idx: dict[str, list[int]] = {}
    for device, key in rows:
        idx.setdefault(device, []).append(int(key.rsplit(":", 1)[1]))
    for device, got in idx.items():  # stream indices 0..n-1, each once: no gap, no duplicate
        assert sorted(got) == list(range(len(got))), device
    n = {d: len(v) for d, v in idx.items()}
    assert ev["phone-2"]["done_s"] < 2.5 and ev["phone-0"]["done_s"] < 3.5  # on time
    assert n["phone-0"] < n["phone-3"] and n["phone-2"] < n["phone-3"]
    assert n["phone-1"] < n["phone-3"]
    report = (run / "report.html").read_text()
    assert "Devices joining, leaving and rebooting" in report
