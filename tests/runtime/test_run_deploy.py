"""``edgeintel run`` deploys the scenario: server processes on loopback, device agents
with emulated links; results delivered == produced; no orphan processes, ports released."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from edgeintel.cli import app
from tests.conftest import tiny_scenario_dict


@pytest.mark.slow
def test_run_deploys_servers_and_agents(tmp_path: Path) -> None:
    sc = tiny_scenario_dict()
    sc["settings"]["training"]["epochs"] = 20  # a model worth guarding (accuracy well above chance)
    sc["settings"]["runtime"] = {
        "rate_hz": 20,
        "store": {"encrypt": True},  # results sealed at rest with each device's key
        "deploy": {
            "enabled": True, "duration_s": 6, "max_devices": 3, "drain_timeout_s": 20,
            # a good version rolled out, then a deliberately bad one rolled back, live
            "lifecycle": {"enabled": True, "after_s": 0.5, "min_results": 15},
        },
    }  # fmt: skip
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(sc))
    runs = tmp_path / "runs"
    res = CliRunner().invoke(
        app,
        [
            "run",
            str(f),
            "--runs-dir",
            str(runs),
            "--run-id",
            "r",
            "-q",
            "--stage",
            "data",
            "--stage",
            "train",
            "--stage",
            "export",
            "--stage",
            "runtime",
        ],
    )
    assert res.exit_code == 0, res.output
    rt = json.loads((runs / "r" / "results.json").read_text())["runtime"]
    assert rt["devices"] == 3
    assert rt["produced"] >= 3 * 80  # 6 s at 20/s per device, with slack for a busy machine
    assert rt["delivered"] == rt["produced"] and rt["undelivered"] == 0
    assert rt["kept_on_devices"] == 0 and rt["dropped_expired_rejected"] == 0
    assert rt["placements"].get("edge", 0) > 0
    assert rt["latency_by_placement"]["edge"]["p50_ms"] > 10  # the link's 10 ms RTT at least
    assert all(link["bytes_up"] > 0 for link in rt["links"].values())
    assert rt["bytes_per_link"]["devices -> micro-1"]["bytes_up"] > 0
    # the caching stage did not run: each device tuned its filter on its first segment
    per_device = rt["filter"]["per_device"]
    assert per_device and all(
        v["threshold_from"] == "tuned on the device's first segment" for v in per_device.values()
    )
    assert rt["produced"] == sum(rt["placements"].values())
    for server in rt["servers"].values():
        assert server["exit_code"] in (0, -15)  # graceful SIGTERM
        with socket.socket() as s:  # port released
            s.bind(("127.0.0.1", int(server["address"].rsplit(":", 1)[1])))
    log = (runs / "r" / "runtime" / "micro-1.log").read_text()
    assert '"event": "serve.stopped"' in log
    assert oct((runs / "r" / "runtime" / "tokens.json").stat().st_mode & 0o777) == "0o600"
    assert os.path.exists(runs / "r" / "report.html")
    # signed models: the run's key stays private, every served file is signed and the
    # servers loaded them under --verify-key
    keys = runs / "r" / "runtime" / "keys"
    assert oct((keys / "signing.key").stat().st_mode & 0o777) == "0o600"
    assert oct((keys / "store.key").stat().st_mode & 0o777) == "0o600"
    assert rt["store_encrypted"] is True
    for db_file in (runs / "r" / "runtime" / "devices").glob("*.db"):
        db = sqlite3.connect(db_file)  # the key check sealed into each device's store
        assert db.execute("SELECT COUNT(*) FROM sealed").fetchone()[0] == 1
        db.close()
    models = list((runs / "r" / "runtime" / "repo").glob("*/*/model.onnx"))
    assert models and all(m.with_name("model.onnx.sig").is_file() for m in models)
    assert '"event": "model.refused"' not in log
    # mutual TLS by default: the run's CA issued one certificate per node, device agent
    # and the operator; keys private, in a private folder, never in a log or a URL
    assert rt["transport"]["tls"] is True and rt["transport"]["ca"] == "scenario CA"
    assert rt["transport"]["certificates"] == 1 + 3 + 1
    pki = runs / "r" / "runtime" / "pki"
    assert oct(pki.stat().st_mode & 0o777) == "0o700"
    keys_found = sorted(pki.rglob("*.key"))
    assert len(keys_found) == 1 + 1 + 3 + 1  # CA, node, devices, operator
    assert all(oct(k.stat().st_mode & 0o777) == "0o600" for k in keys_found)
    key_lines = {ln for k in keys_found for ln in k.read_text().splitlines() if "-" not in ln}
    for text in (log, res.output, (runs / "r" / "results.json").read_text()):
        assert not any(line in text for line in key_lines)
    report = (runs / "r" / "report.html").read_text()
    assert '"tls.revoked"' not in log and "mutual TLS" in report
    # the lifecycle: version 2 promoted, version 3 (classes shifted) rolled back by a guard
    life = rt["lifecycle"]
    assert "error" not in life, life
    good, bad = (v["servers"]["micro-1"] for v in life["versions"])
    assert good["state"] == "promoted" and bad["state"] == "rolled_back", life
    assert bad["reason"].startswith("share correct"), bad["reason"]
    assert set(life["final_versions"].values()) == {"2"} and life["swaps"]
    assert "Rollouts on the running fleet" in report and "rolled_back" in report
    assert '"event": "rollout.promoted"' in log and '"event": "rollout.rolled_back"' in log


@pytest.mark.slow
def test_run_deploys_the_offloading_plan_and_follows_the_trace(tmp_path: Path) -> None:
    """placement: plan. Slow phones (0.0001x this machine) offload to their edge server
    as the offloading stage planned; their link's outage (trace 20-25 s, played 10x
    faster) moves them to local execution from the first request in it."""
    sc = tiny_scenario_dict()
    sc["devices"][0]["count"] = 3
    sc["device_profiles"]["phone"]["compute_speed"] = 0.0001
    sc["devices"][0]["link"] = {
        "bandwidth_mbps": 50,
        "rtt_ms": 10,
        "trace": [
            {"t_s": 0, "bandwidth_mbps": 50},
            {"t_s": 20, "bandwidth_mbps": 0},
            {"t_s": 25, "bandwidth_mbps": 50},
        ],
    }
    sc["settings"]["caching"] = {"enabled": False}
    sc["settings"]["runtime"] = {
        "rate_hz": 20,
        "deploy": {
            "enabled": True,
            "duration_s": 3,
            "placement": "plan",
            "trace_time_scale": 10,
            "drain_timeout_s": 20,
            "tls": False,  # plaintext only when asked, and the results say so
        },
    }
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(sc))
    runs = tmp_path / "runs"
    args = ["run", str(f), "--runs-dir", str(runs), "--run-id", "r", "-q"]
    for stage in ("data", "train", "export", "offloading", "runtime"):
        args += ["--stage", stage]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    results = json.loads((runs / "r" / "results.json").read_text())
    assert {d["decision"] for d in results["offloading"]["devices"]} == {"d2e"}
    rt = results["runtime"]
    assert rt["delivered"] == rt["produced"] and rt["kept_on_devices"] == 0
    assert rt["transport"]["tls"] is False and "plaintext" in rt["transport"]["note"]
    assert not (runs / "r" / "runtime" / "pki").exists()
    assert rt["plan_decisions"].get("d2e:micro-1", 0) > 0 and rt["placements"].get("edge", 0) > 0
    outage = [s for s in rt["plan_switches"] if s["reason"] == "d2e:micro-1 unavailable"]
    # each device moves at its first request in the outage: when that is depends on how
    # the machine schedules the agents (CI stalled them 0.39 s, 3.9 s of trace), so the
    # switch is checked to fall inside the outage, and the fallbacks below show that no
    # request was sent into it after the first
    assert outage and all(20 <= s["trace_t_s"] < 25 for s in outage)
    assert all(s["to"] == "local" for s in outage)
    # nothing was sent into the outage (the plan knew the link was down), except at most
    # one request per device decided just before it began
    assert rt["fallbacks"] <= 3
