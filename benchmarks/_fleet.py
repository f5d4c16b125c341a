"""A fleet of real device agents for bench_lifecycle: model files, an agent host, a server.

``linear_onnx`` writes a real ONNX classifier (Flatten, MatMul, Add) fitted by ridge
regression on one-hot labels. ``python _fleet.py CONFIG.json`` is one agent host
process: it runs the ``DeviceAgent`` of each device named in the config, each in its own
thread with its own SQLite store, HTTP client and ``ModelUpdater`` (signatures checked
against the run's key), streaming its share of the held-out digits at ``rate_hz`` for
``duration_s``. When they finish, it writes what each agent did to ``out``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def linear_onnx(path: Path, x: np.ndarray, y: np.ndarray, lam: float = 10.0) -> Path:
    """A ridge-regression linear classifier of ``x`` (N, 1, H, W) as ONNX at ``path``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    flat = x.reshape(len(x), -1).astype(np.float64)
    a = np.c_[flat, np.ones(len(flat))]
    w = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ np.eye(10)[y])
    w = w.astype(np.float32)
    shape = ["batch", *x.shape[1:]]
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["input"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "W"], ["mm"]),
            helper.make_node("Add", ["mm", "b"], ["logits"]),
        ],
        "linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(w[:-1], "W"), numpy_helper.from_array(w[-1], "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


class Server:
    """``edgeintel serve`` as a child process on a free loopback port."""

    def __init__(self, repo: Path, work: Path, *extra: str) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.url = f"127.0.0.1:{self.port}"
        self.log = work / "server.log"
        args = [sys.executable, "-m", "edgeintel", "serve", str(repo), "--port", str(self.port)]
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([*args, *extra], stdout=log, stderr=log, env=env)
        import httpx

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(self.log.read_text()[-2000:])
            try:
                if httpx.get(f"http://{self.url}/v2/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server not ready in 60 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def host(config: dict[str, Any]) -> None:
    """Run the config's agents to the end of their stream time; write their records."""
    from edgeintel.onnx_files import make_session
    from edgeintel.runtime.agent import DeviceAgent, DeviceStream
    from edgeintel.runtime.store import DeviceStore
    from edgeintel.runtime.transport import HttpTransport
    from edgeintel.runtime.updater import ModelUpdater
    from edgeintel.security.signing import ArtifactVerifier

    pool = np.load(config["pool"])
    x, y = pool["x"], pool["y"]
    verify = ArtifactVerifier(config["verify_key"])
    work = Path(config["dir"])
    agents = []
    for name, index in config["devices"]:
        transport = HttpTransport(config["url"], max_connections=2)
        pick = slice(index, None, config["fleet"])
        stream = DeviceStream(x[pick], y[pick], 1.0 / config["rate_hz"])
        updater = ModelUpdater("digits", work / name, transport, verify=verify)
        agents.append(
            DeviceAgent(
                name,
                stream,
                make_session(config["onnx"]),
                DeviceStore(work / f"{name}.db"),
                transport,
                model="digits",
                updater=updater,
            )
        )
    threads = [
        threading.Thread(target=a.run, args=(10**9, config["duration_s"], 60.0)) for a in agents
    ]
    for t in threads:
        t.start()
    stop = Path(config["stop"])
    while any(t.is_alive() for t in threads):
        if stop.exists():  # the benchmark is done: stop producing, deliver what is stored
            for a in agents:
                a.halt()
        time.sleep(0.2)
    out = {}
    for a in agents:
        out[a.name] = {
            "produced": a.stats.produced,
            "rejected": a.stats.rejected,
            "undelivered": a.store.size,
            "swaps": [[round(t, 3), v] for t, v in a.versions],
            "refused": dict(a.updater.refused) if a.updater else {},
            "forward_errors": a.forward_errors,
            "version": a.active.version,
        }
        a.store.close()
        assert a.transport is not None
        a.transport.close()
    Path(config["out"]).write_text(json.dumps(out))


if __name__ == "__main__":
    host(json.loads(Path(sys.argv[1]).read_text()))
