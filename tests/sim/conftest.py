"""Small scenarios for the simulator's tests, and a local Ray cluster on loopback (started
and stopped here) for the sweep tests."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgeintel.scenario import Scenario, parse_scenario

from ..conftest import tiny_scenario_dict


def hand_scenario(backhaul_mbps: float = 100, device_speed: float = 0.5) -> Scenario:
    """One micro station ``bs`` (compute speed 0.5, one worker), a cloud of speed 4, two
    devices in groups with RTT 2 ms and 4 ms on 8 Mbit/s links, a 16 Mbit/s cell: numbers
    easy to work by hand."""
    raw: dict[str, Any] = tiny_scenario_dict()
    raw["edge_servers"] = [{"name": "bs", "kind": "micro", "compute_speed": 0.5}]
    raw["cloud"] = {"name": "cloud", "compute_speed": 4.0}  # the worked examples' speed
    raw["device_profiles"]["phone"]["compute_speed"] = device_speed
    raw["devices"] = [
        {
            "name": "a",
            "count": 1,
            "profile": "phone",
            "attach": "bs",
            "link": {"bandwidth_mbps": 8, "rtt_ms": 2},
        },
        {
            "name": "b",
            "count": 1,
            "profile": "phone",
            "attach": "bs",
            "link": {"bandwidth_mbps": 8, "rtt_ms": 4},
        },
    ]
    raw["links"] = [{"between": ["bs", "cloud"], "bandwidth_mbps": backhaul_mbps, "rtt_ms": 10}]
    raw["settings"]["offloading"] = {"server_workers": 1}
    raw["settings"]["sim"] = {
        "duration_s": 1.0,
        "decisions": "task",
        "filter": False,
        "task_ms": 10.0,
        "input_bytes": 10_000,
        "result_bytes": 1_000,
        "micro_uplink_mbps": 16,
        "max_batch": 2,
        "batch_marginal": 0.5,
        "cache_entries": 10,
        "series_bins": 4,
        "traces": {"speed_sigma": 0, "bandwidth_sigma": 0},
        "mobility": {"handover_rate_hz": 0},
    }
    return parse_scenario(raw)


def busy_scenario() -> Scenario:
    """Everything on: two stations, loss, a backhaul with congestion and an outage, a device
    link trace, availability off periods, handovers, federated rounds, small caches."""
    raw: dict[str, Any] = tiny_scenario_dict()
    raw["device_profiles"]["tablet"] = {
        **raw["device_profiles"]["phone"],
        "compute_speed": 4.0,
        "battery_j": 2,
    }
    raw["edge_servers"] = [
        {"name": "macro", "kind": "macro", "compute_speed": 2.0},
        {"name": "micro", "kind": "micro", "compute_speed": 0.5},
    ]
    raw["devices"] = [
        {
            "name": "phone",
            "count": 6,
            "profile": "phone",
            "attach": "micro",
            "link": {
                "bandwidth_mbps": 30,
                "rtt_ms": 12,
                "loss": 0.05,
                "trace": [{"t_s": 0, "bandwidth_mbps": 30}, {"t_s": 20, "bandwidth_mbps": 5}],
            },
        },
        {
            "name": "cam",
            "count": 4,
            "profile": "phone",
            "attach": "macro",
            "link": {"bandwidth_mbps": 50, "rtt_ms": 6},
        },
        {"name": "far", "count": 2, "profile": "tablet", "attach": "cloud"},
    ]
    raw["links"] = [
        {"between": ["micro", "macro"], "bandwidth_mbps": 200, "rtt_ms": 2},
        {
            "between": ["macro", "cloud"],
            "bandwidth_mbps": 100,
            "rtt_ms": 30,
            "trace": [
                {"t_s": 0, "bandwidth_mbps": 100},
                {"t_s": 15, "bandwidth_mbps": 10, "rtt_ms": 60},
                {"t_s": 25, "bandwidth_mbps": 0},
                {"t_s": 30, "bandwidth_mbps": 100, "rtt_ms": 30},
            ],
        },
    ]
    raw["settings"]["offloading"] = {"server_workers": 1, "cloud_workers": 3, "request_rate_hz": 8}
    raw["settings"]["sim"] = {
        "duration_s": 40.0,
        "task_ms": 60.0,
        "cache_entries": 20,
        "catalog": 200,
        "max_batch": 2,
        "queue_limit": 30,
        "series_bins": 400,
        "traces": {"mean_on_s": 15, "mean_off_s": 5},
        "mobility": {"handover_rate_hz": 0.05, "follow_entries": 4},
        "federated": {"enabled": True, "round_interval_s": 10, "clients_per_round": 4},
    }
    return parse_scenario(raw)


# --------------------------------------------------------------------------- Ray on loopback

SRC = Path(__file__).resolve().parents[2] / "src"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _refresh_ray_auth() -> None:
    """Ray caches its auth settings when first imported; an earlier test may have imported
    it, so make it read RAY_AUTH_* again (what Ray's own test utilities do)."""
    if "ray" not in sys.modules or sys.modules["ray"] is None:
        return
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """``ray start --head`` (2 CPUs, no dashboard, a private temp dir and auth token) in its
    own session; yields ``host:port``; SIGTERM to the head's ``--block`` process after,
    then anything left in its process group is killed. Skipped without the ``ray`` extra."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        pytest.skip("the optional ray extra is not installed")
    ray_bin = Path(sys.executable).parent / "ray"
    if not ray_bin.exists():
        pytest.skip("the ray command is not installed next to this Python")
    port = _free_port()
    token = secrets.token_hex(32)
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)  # no ~/.ray/auth_token
    _refresh_ray_auth()
    env = dict(
        os.environ,
        RAY_USAGE_STATS_ENABLED="0",
        PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    tmp = tempfile.mkdtemp(prefix="ray_", dir="/tmp")  # short: Ray's socket paths are limited
    log = open(Path(tmp) / "head.log", "wb")  # noqa: SIM115 - closed in finally
    args = [str(ray_bin), "start", "--head", "--block", "--port", str(port),
            "--node-ip-address", "127.0.0.1", "--num-cpus", "2", "--include-dashboard", "false",
            "--disable-usage-stats", "--temp-dir", tmp]  # fmt: skip
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=log, start_new_session=True)
    clean = False
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"ray start exited with {proc.returncode}; see {tmp}/head.log")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"Ray head not listening within 90 s; see {tmp}/head.log")
                time.sleep(0.3)
        yield f"127.0.0.1:{port}"
        clean = True  # keep the head's log when it did not start
    finally:
        proc.send_signal(signal.SIGTERM)  # the head drains and stops its own processes
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever of this session is left
        proc.wait(10)
        log.close()
        if clean:
            shutil.rmtree(tmp, ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _refresh_ray_auth()
