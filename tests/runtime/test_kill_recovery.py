"""Real processes, real failures: kill -9 the server during a device run, kill -9 the device
agent; after restarts every produced result is delivered exactly once."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from edgeintel.runtime.repository import add_model
from tests.conftest import tiny_scenario_dict
from tests.runtime.conftest import ROOT, ServerProcess, digits_onnx

pytestmark = pytest.mark.slow

LIMIT = 200
RATE_HZ = 40.0  # 5 s of production


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, Path]:
    onnx = digits_onnx(tmp_path / "digits.onnx")
    repo = tmp_path / "repo"
    add_model(repo, "digits", onnx, 1)
    sc = tmp_path / "tiny.yaml"
    sc.write_text(yaml.safe_dump(tiny_scenario_dict()))
    return {"onnx": onnx, "repo": repo, "scenario": sc, "tmp": tmp_path}


def _device(s: dict[str, Path], port: int, *extra: str) -> subprocess.Popen[bytes]:
    args = [
        sys.executable,
        "-m",
        "edgeintel",
        "device",
        str(s.get("encrypted", s["scenario"])),
        *extra,
        "--device",
        "phone-0",
        "--onnx",
        str(s["onnx"]),
        "--store",
        str(s["tmp"] / "dev.db"),
        "--server",
        f"127.0.0.1:{port}",
        "--model",
        "digits",
        "--tier",
        "edge",
        "--limit",
        str(LIMIT),
        "--rate-hz",
        str(RATE_HZ),
        "--drain-timeout-s",
        "30",
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    out = open(s["tmp"] / "device.out", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(args, stdout=out, stderr=out, env=env)


def _sink_keys(path: Path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return [k for (k,) in db.execute("SELECT key FROM results WHERE device = 'phone-0'")]
    finally:
        db.close()


def _next_index(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        row = db.execute("SELECT v FROM meta WHERE k = 'next_index'").fetchone()
        return int(row[0]) if row else 0
    except sqlite3.OperationalError:  # the agent has not created its tables yet
        return 0
    finally:
        db.close()


def _wait_for(cond, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def _last_json(path: Path) -> dict:
    text = path.read_text()
    return json.loads(text[text.index("{\n") :])


def test_kill_server_device_keeps_producing_then_delivers_once(setup) -> None:
    s = setup
    sink = s["tmp"] / "sink.db"
    srv = ServerProcess(s["repo"], s["tmp"], "--sink", str(sink))
    dev = None
    try:
        srv.start()
        dev = _device(s, srv.port)
        _wait_for(lambda: sink.exists() and len(_sink_keys(sink)) > 20, 60)
        srv.stop(signal.SIGKILL)
        during = _next_index(s["tmp"] / "dev.db")
        time.sleep(1.5)
        # the device keeps producing locally while the server is down
        assert _next_index(s["tmp"] / "dev.db") >= during + 20
        srv.start()
        assert dev.wait(120) == 0
    finally:
        if dev is not None and dev.poll() is None:
            dev.kill()
            dev.wait(10)
        srv.stop()
    keys = _sink_keys(sink)
    assert sorted(keys) == sorted(f"phone-0:{i}" for i in range(LIMIT))  # all, once
    out = _last_json(s["tmp"] / "device.out")
    assert out["undelivered"] == 0 and out["produced"] == LIMIT
    assert out["placements"].get("device_fallback", 0) >= 20
    assert out["placements"].get("edge", 0) >= 20


def test_kill_agent_resumes_and_loses_nothing(setup) -> None:
    """With the store encrypted at rest (settings.runtime.store.encrypt, the run's store
    secret): the exactly-once guarantee holds across kill -9 all the same."""
    from edgeintel.security.store_crypto import SEALED_PREFIX, generate_store_secret

    s = setup
    sc = tiny_scenario_dict()
    sc["settings"]["runtime"] = {"store": {"encrypt": True}}
    s["encrypted"] = s["tmp"] / "encrypted.yaml"
    s["encrypted"].write_text(yaml.safe_dump(sc))
    key = ("--store-key", str(generate_store_secret(s["tmp"] / "store.key")))
    sink = s["tmp"] / "sink.db"
    srv = ServerProcess(s["repo"], s["tmp"], "--sink", str(sink))
    dev = None
    try:
        srv.start()
        dev = _device(s, srv.port, *key)
        _wait_for(lambda: _next_index(s["tmp"] / "dev.db") > 40, 60)
        dev.send_signal(signal.SIGKILL)
        dev.wait(10)
        killed_at = _next_index(s["tmp"] / "dev.db")
        assert 0 < killed_at < LIMIT
        db = sqlite3.connect(s["tmp"] / "dev.db")
        stored = [p for (p,) in db.execute("SELECT payload FROM pending")]
        sealed = db.execute("SELECT COUNT(*) FROM sealed").fetchone()[0]
        db.close()
        assert sealed == 1 and all(p.startswith(SEALED_PREFIX) for p in stored)  # key check
        dev = _device(s, srv.port, *key)
        assert dev.wait(120) == 0
    finally:
        if dev is not None and dev.poll() is None:
            dev.kill()
            dev.wait(10)
        srv.stop()
    keys = _sink_keys(sink)
    assert len(keys) == LIMIT
    assert sorted(keys) == sorted(f"phone-0:{i}" for i in range(LIMIT))
    out = _last_json(s["tmp"] / "device.out")
    assert out["produced"] == LIMIT - killed_at  # the restart produced only what was missing
