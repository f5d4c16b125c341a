"""Links in the kernel: a network namespace for the device and a veth pair to the server,
made by the test itself (skipped without root and iproute2). The device agent in the
namespace falls back to local inference while its link is down and offloads again when it
is back; with the ``netem`` qdisc (kernel module sch_netem) it also measures the delay
netem adds and falls back while netem drops every packet (skipped where the kernel has no
netem, as in this project's CI container)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeintel.runtime.repository import add_model
from tests.runtime.conftest import ROOT, digits_onnx, free_port

pytestmark = pytest.mark.slow

DELAY_MS = 15  # each direction: the round trip gains >= 30 ms


def _ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = ["ip", "netns", "exec", ns, *args] if ns else list(args)
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=30)


@pytest.fixture
def netns() -> Iterator[tuple[str, str, str, str]]:
    """(namespace, host-side veth, device-side veth, host address); the device is .2."""
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("tc"):
        pytest.skip("needs root, iproute2's ip and tc")
    tag = f"{os.getpid() % 100000}"
    ns, vh, vn = f"ei-ns{tag}", f"eih{tag}", f"ein{tag}"
    net = f"10.231.{os.getpid() % 250}"
    if _ip("ip", "netns", "add", ns, check=False).returncode != 0:
        pytest.skip("cannot create a network namespace here")
    try:
        steps = [
            (None, ["ip", "link", "add", vh, "type", "veth", "peer", "name", vn]),
            (None, ["ip", "link", "set", vn, "netns", ns]),
            (None, ["ip", "addr", "add", f"{net}.1/30", "dev", vh]),
            (None, ["ip", "link", "set", vh, "up"]),
            (ns, ["ip", "addr", "add", f"{net}.2/30", "dev", vn]),
            (ns, ["ip", "link", "set", vn, "up"]),
            (ns, ["ip", "link", "set", "lo", "up"]),
        ]
        for where, cmd in steps:
            r = _ip(*cmd, ns=where, check=False)
            if r.returncode != 0:
                pytest.skip(f"cannot set up the namespace's link: {' '.join(cmd)}: {r.stderr}")
        yield ns, vh, vn, f"{net}.1"
    finally:
        _ip("ip", "netns", "del", ns, check=False)  # takes the veth pair with it
        _ip("ip", "link", "del", vh, check=False)


_AGENT = """
import json, sys
import numpy as np
from edgeintel.runtime.agent import DeviceAgent, DeviceStream
from edgeintel.onnx_files import make_session
from edgeintel.runtime.seams import ExecutionTier, StaticPlan
from edgeintel.runtime.settings import RuntimeSettings
from edgeintel.runtime.store import DeviceStore
from edgeintel.runtime.transport import HttpTransport

server, onnx, store, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
x = np.random.default_rng(0).random((n, 1, 8, 8), dtype=np.float32)
t = HttpTransport(server)
with DeviceStore(store) as st:
    agent = DeviceAgent("cam-0", DeviceStream(x, np.zeros(n, int), 0.02), make_session(onnx),
                        st, t, model="digits", plan=StaticPlan(ExecutionTier.EDGE),
                        settings=RuntimeSettings(offload_timeout_ms=300), retry_after_s=0.0)
    stats = agent.run(n, drain_timeout_s=0.0)
    print(json.dumps({"placements": stats.placements, "latency_ms": stats.latency_ms}))
t.close()
"""


def _agent(ns: str, server: str, onnx: Path, store: Path, n: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    r = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            ns,
            sys.executable,
            "-c",
            _AGENT,
            server,
            str(onnx),
            str(store),
            str(n),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return dict(json.loads(r.stdout.strip().splitlines()[-1]))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[object]:
    """A repository and a function starting ``edgeintel serve`` on a given address."""
    procs: list[subprocess.Popen[bytes]] = []
    onnx = digits_onnx(tmp_path / "d.onnx")
    repo = tmp_path / "repo"
    add_model(repo, "digits", onnx, 1)

    def start(host: str) -> tuple[str, Path]:
        import httpx

        port = free_port()
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
        with open(tmp_path / "server.log", "ab") as log:
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "edgeintel",
                        "serve",
                        str(repo),
                        "--host",
                        host,
                        "--port",
                        str(port),
                    ],
                    stdout=log,
                    stderr=log,
                    env=env,
                )
            )
        server = f"{host}:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://{server}/v2/health/ready", timeout=1).status_code == 200:
                    return server, onnx
            except httpx.TransportError:
                time.sleep(0.1)
        pytest.fail("server not ready")

    try:
        yield start
    finally:
        for p in procs:
            p.terminate()
            p.wait(20)


def test_link_down_in_a_namespace(netns: tuple[str, str, str, str], served, tmp_path: Path) -> None:
    ns, vh, _, host = netns
    server, onnx = served(host)
    up = _agent(ns, server, onnx, tmp_path / "a.db", 10)
    assert up["placements"] == {"edge": 10}
    subprocess.run(["ip", "link", "set", vh, "down"], check=True)  # the link is cut
    down = _agent(ns, server, onnx, tmp_path / "b.db", 5)
    assert down["placements"] == {"device_fallback": 5}
    subprocess.run(["ip", "link", "set", vh, "up"], check=True)
    time.sleep(0.5)
    again = _agent(ns, server, onnx, tmp_path / "c.db", 5)
    assert again["placements"] == {"edge": 5}


def test_netem_delay_and_loss_in_a_namespace(
    netns: tuple[str, str, str, str], served, tmp_path: Path
) -> None:
    ns, vh, vn, host = netns
    for where, dev in ((None, vh), (ns, vn)):
        r = _ip(
            "tc",
            "qdisc",
            "add",
            "dev",
            dev,
            "root",
            "netem",
            "delay",
            f"{DELAY_MS}ms",
            ns=where,
            check=False,
        )
        if r.returncode != 0:
            pytest.skip(f"no netem qdisc in this kernel: {r.stderr.strip()}")
    server, onnx = served(host)
    # 1. delay: every offload pays netem's round trip
    up = _agent(ns, server, onnx, tmp_path / "a.db", 20)
    assert up["placements"] == {"edge": 20}
    lat = sorted(up["latency_ms"]["edge"])
    assert lat[len(lat) // 2] >= 2 * DELAY_MS
    # 2. netem drops everything: the agent runs locally
    subprocess.run(
        [
            "tc",
            "qdisc",
            "change",
            "dev",
            vh,
            "root",
            "netem",
            "delay",
            f"{DELAY_MS}ms",
            "loss",
            "100%",
        ],
        check=True,
    )
    down = _agent(ns, server, onnx, tmp_path / "b.db", 5)
    assert down["placements"] == {"device_fallback": 5}
    # 3. the link heals: offloading resumes
    subprocess.run(
        ["tc", "qdisc", "change", "dev", vh, "root", "netem", "delay", f"{DELAY_MS}ms"],
        check=True,
    )
    again = _agent(ns, server, onnx, tmp_path / "c.db", 5)
    assert again["placements"] == {"edge": 5}
