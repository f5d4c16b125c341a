"""D2D in a deployed run (``edgeintel run``): slow watches whose internet link goes down
have their neighbouring phones' agents run their model over the D2D link; every result
is delivered exactly once by the watch that produced it, and the report says who served
whom."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from edgeintel.cli import app
from tests.conftest import tiny_scenario_dict


def d2d_scenario() -> dict[str, Any]:
    """Two phones and two watches (10^4 x slower than this machine) on one micro BS; the
    watches' uplink is down from trace time 5 s to 25 s (played 10x faster)."""
    sc = tiny_scenario_dict()
    sc["devices"][0]["count"] = 2
    sc["device_profiles"]["watch"] = {**sc["device_profiles"]["phone"], "compute_speed": 0.0001}
    sc["devices"].append({
        "name": "watch", "count": 2, "profile": "watch", "attach": "micro-1",
        "link": {"bandwidth_mbps": 2, "rtt_ms": 60, "trace": [
            {"t_s": 0, "bandwidth_mbps": 2}, {"t_s": 5, "bandwidth_mbps": 0},
            {"t_s": 25, "bandwidth_mbps": 2}]},
    })  # fmt: skip
    sc["settings"]["caching"] = {"enabled": False}
    sc["settings"]["offloading"] = {"d2d": {"bandwidth_mbps": 50, "rtt_ms": 3, "neighbors": 2}}
    sc["settings"]["runtime"] = {
        "rate_hz": 20,
        "offload_timeout_ms": 2000,
        "deploy": {"enabled": True, "duration_s": 3, "placement": "plan",
                   "trace_time_scale": 10, "drain_timeout_s": 20},
    }  # fmt: skip
    return sc


@pytest.mark.slow
def test_run_executes_d2d_on_the_neighbours_agents(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(d2d_scenario()))
    runs = tmp_path / "runs"
    args = ["run", str(f), "--runs-dir", str(runs), "--run-id", "r", "-q"]
    for stage in ("data", "train", "export", "offloading", "runtime"):
        args += ["--stage", stage]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    results = json.loads((runs / "r" / "results.json").read_text())
    rt = results["runtime"]
    d2d = rt["d2d"]
    # the watches' work ran on the phones' agents, over mutual TLS, counted on both sides
    assert set(d2d["helpers"]) <= {"phone-0", "phone-1", "watch-0", "watch-1"}
    served = d2d["requests_served"]
    sent = sum(d2d["results_by_requester"].values())
    assert sent > 0 and set(d2d["results_by_requester"]) <= {"watch-0", "watch-1"}
    assert rt["placements"]["d2d"] == sent and served >= sent and served - sent <= 2
    assert d2d["refused"] == 0 and rt["transport"]["tls"] is True
    assert all(link["bytes_up"] > 0 for link in d2d["links"].values())
    # the watches kept working through their outage (D2D needs no internet), and every
    # result, D2D ones included, reached the edge server exactly once afterwards
    assert rt["delivered"] == rt["produced"] and rt["kept_on_devices"] == 0
    assert rt["links"]["watch-0"]["outages"] > 0
    assert "D2D: neighbours&#39; work executed" in (runs / "r" / "report.html").read_text()
