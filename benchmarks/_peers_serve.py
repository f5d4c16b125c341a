"""Serving against Triton, KServe and MLServer, side by side (issue 25, item 3).

Every server serves the same ONNX file (zoo ``image_cnn``, width 16, 1x8x8 input) with
ONNX Runtime on one intra-op thread, and every one is driven by the same load generator
(benchmarks/_loadgen.py: closed-loop keep-alive HTTP/1.1 clients, every response
decoded and checked) at 1, 8 and 64 clients, interleaved over ROUNDS rounds (the order
rotates each round), so each ratio compares runs made seconds apart.

edgeintel's side: ``edgeintel serve`` (one uvicorn worker) with dynamic batching (up to
32 rows, adaptive wait) and, for the batching speed-up, one without (batch 1).

The peers, each a subprocess of its own venv (``make peers-venvs`` builds
``.venv-peers/<peer>`` from ``benchmarks/peer_servers/requirements-<peer>.txt``: their
pins cannot live beside the project's) running ``benchmarks/peer_servers/<peer>_server.py``:
Triton through PyTriton (tritonserver's HTTP front end and dynamic batcher, 32 rows, no
queue delay), KServe's Python model server (no batcher in Python) and MLServer (its
adaptive batching, 32 requests, 2 ms). Requests are binary v2 (the binary data
extension) where the peer speaks it, JSON v2 for MLServer, whose REST face has no
binary extension; edgeintel is measured in that same format for each ratio. Server CPU
per request (the server's process tree, user + system) is recorded beside each run. A
missing venv raises: a missing peer is a failed benchmark, not a skipped target.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from _common import target
from edgeintel.runtime.nodes import free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEER_DIR = HERE / "peer_servers"
VENVS = ROOT / ".venv-peers"
ROUNDS = 5
CLIENTS = (1, 8, 64)
N_REQUESTS = {1: 300, 8: 2000, 64: 6000}  # p99 of 6,000: more than one 32-row stall
WARMUP = 300
LOADED = (8, 64)  # client counts the peer targets are judged at
LOG = Path(tempfile.gettempdir()) / "edgeintel-peers-serve.log"  # the peers' output, kept


@dataclass(frozen=True)
class Peer:
    """A peer server: its venv and script name, request format and how many ports it takes."""

    label: str
    venv: str
    binary: bool
    ports: int
    setup: str


PEERS = (
    Peer(
        "Triton (PyTriton)",
        "triton",
        True,
        3,
        "nvidia-pytriton 0.7.0 (tritonserver's HTTP front end), dynamic batcher: "
        "max_batch_size 32, max_queue_delay_microseconds 0; @batch Python callable on ORT",
    ),
    Peer(
        "KServe Python server",
        "kserve",
        True,
        2,
        "kserve 0.21.0 ModelServer, 1 uvicorn worker, kserve.Model.predict on ORT, no batcher",
    ),
    Peer(
        "MLServer",
        "mlserver",
        False,
        3,
        "mlserver 1.7.1, parallel_workers 1, adaptive batching max_batch_size 32, "
        "max_batch_time 2 ms; custom MLModel on ORT; JSON v2 (no binary extension over REST)",
    ),
)


class PeerServer:
    """``benchmarks/peer_servers/<venv>_server.py`` under ``.venv-peers/<venv>/bin/python``,
    in its own session (stopped as a process group: PyTriton's tritonserver and stub,
    MLServer's worker)."""

    def __init__(self, peer: Peer, onnx: Path, log: IO[bytes]) -> None:
        py = VENVS / peer.venv / "bin" / "python"
        if not py.exists():
            raise SystemExit(f"_peers_serve: {py} is missing: run `make peers-venvs`")
        self.ports = [free_port() for _ in range(peer.ports)]
        self.port = self.ports[0]
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(PEER_DIR))
        script = PEER_DIR / f"{peer.venv}_server.py"
        args = [str(py), str(script), str(onnx), "digits", *map(str, self.ports)]
        self.proc = subprocess.Popen(
            args,
            cwd=PEER_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready(peer, log)

    def _wait_ready(self, peer: Peer, log: IO[bytes], timeout_s: float = 240.0) -> None:
        import httpx

        url = f"http://127.0.0.1:{self.port}/v2/models/digits/ready"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{peer.label} exited ({self.proc.returncode}); see {log.name}")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"{peer.label} not ready in {timeout_s:.0f} s; see {log.name}")

    def stop(self) -> None:
        for sig, wait_s in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
            if self.proc.poll() is not None:
                break
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(wait_s)
            except subprocess.TimeoutExpired:
                continue
        # whatever the group left behind (a tritonserver that outlived its parent)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


def server_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its live descendants."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def server_runqueue_wait_s(pid: int) -> float:
    """Seconds the threads of a process and its live descendants spent runnable but
    waiting for a core (``/proc/<pid>/task/*/schedstat``, field 2): on a shared machine
    the server's stalls, which no server change removes."""
    import psutil

    try:
        pids = [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for p in pids:
        for f in Path(f"/proc/{p}/task").glob("*/schedstat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int(f.read_text().split()[1])
    return total / 1e9


def _summary(rs: list[dict[str, Any]]) -> dict[str, Any]:
    med = {
        k: float(np.median([r[k] for r in rs])) for k in ("throughput_per_s", "p50_ms", "p99_ms")
    }
    return {
        "median_throughput_per_s": med["throughput_per_s"],
        "median_p50_ms": med["p50_ms"],
        "median_p99_ms": med["p99_ms"],
        "median_server_cpu_ms_per_request": float(
            np.median([r["server_cpu_ms_per_request"] for r in rs])
        ),
        "median_server_runqueue_wait_ms_per_request": float(
            np.median([r["server_runqueue_wait_ms_per_request"] for r in rs])
        ),
        "failed": sum(r["failed"] for r in rs),
        "rounds": rs,
    }


def _paired(a: list[dict[str, Any]], b: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Per-round ratios a[key] / b[key] (runs of one round are seconds apart), median and spread."""
    r = [x[key] / y[key] if y[key] else 0.0 for x, y in zip(a, b, strict=True)]
    return {"median": float(np.median(r)), "min": min(r), "max": max(r), "rounds": r}


def measure(
    servers: dict[str, tuple[int, int, bool]],
) -> dict[str, dict[int, list[dict[str, Any]]]]:
    """Load every ``name -> (port, pid, binary)`` at each client count, ROUNDS interleaved
    rounds (the order rotated each round); each run gains its server's CPU per request."""
    from bench_serve import load

    for port, _, binary in servers.values():
        load(port, WARMUP, binary=binary, concurrency=8)
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {
        s: {c: [] for c in CLIENTS} for s in servers
    }
    names = list(servers)
    for r in range(ROUNDS):
        order = names[r % len(names) :] + names[: r % len(names)]
        for clients in CLIENTS:
            for name in order:
                port, pid, binary = servers[name]
                cpu0, wait0 = server_cpu_s(pid), server_runqueue_wait_s(pid)
                out = load(port, N_REQUESTS[clients], binary=binary, concurrency=clients)
                ok = max(out["ok"], 1)
                out["server_cpu_ms_per_request"] = (server_cpu_s(pid) - cpu0) * 1000 / ok
                out["server_runqueue_wait_ms_per_request"] = (
                    (server_runqueue_wait_s(pid) - wait0) * 1000 / ok
                )
                runs[name][clients].append(out)
                print(
                    f"  round {r} {clients:>2} clients {name:<28} "
                    f"{out['throughput_per_s']:8.0f}/s p99 {out['p99_ms']:7.1f} ms "
                    f"cpu {out['server_cpu_ms_per_request']:.3f} ms/req "
                    f"runq {out['server_runqueue_wait_ms_per_request']:.3f} ms/req "
                    f"failed {out['failed']}",
                    flush=True,
                )
    return runs


def ort_cost_us(onnx: Path, rows: tuple[int, ...] = (1, 32), calls: int = 300) -> dict[str, float]:
    """CPU microseconds of one ONNX Runtime call (1 thread) at each batch size, best of 5
    repeats: what batching can save in inference itself."""
    from edgeintel.onnx_files import make_session

    sess = make_session(onnx)
    name = sess.get_inputs()[0].name
    out: dict[str, float] = {}
    for n in rows:
        x = np.random.default_rng(0).random((n, 1, 8, 8), dtype=np.float32)
        for _ in range(30):
            sess.run(None, {name: x})
        best = float("inf")
        for _ in range(5):
            t = time.process_time()
            for _ in range(calls):
                sess.run(None, {name: x})
            best = min(best, (time.process_time() - t) / calls)
        out[f"{n}_rows"] = best * 1e6
    return out


def _model(folder: Path) -> tuple[Path, Path]:
    import torch

    from edgeintel.models import build_model, export_onnx
    from edgeintel.runtime.repository import add_model

    torch.manual_seed(0)
    onnx = folder / "digits.onnx"
    model = build_model("image_cnn", (1, 8, 8), 10, width=16)
    export_onnx(model, (1, 8, 8), onnx, labels=[str(i) for i in range(10)])
    add_model(folder / "repo", "digits", onnx, 1)
    return onnx, folder / "repo"


def run() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from bench_serve import Server

    missing = [p.venv for p in PEERS if not (VENVS / p.venv / "bin" / "python").exists()]
    if missing:
        raise SystemExit(f"_peers_serve: .venv-peers/{missing} missing: run `make peers-venvs`")
    with tempfile.TemporaryDirectory(prefix="peers-serve-") as d:
        onnx, repo = _model(Path(d))
        common = ["--max-queue-delay-us", "2000", "--queue-capacity", "4096"]
        started: list[Any] = []
        with open(LOG, "wb") as log:
            try:
                ours = Server(repo, "--max-batch-size", "32", *common)
                started.append(ours)
                unbatched = Server(repo, "--max-batch-size", "1", *common)
                started.append(unbatched)
                servers = {
                    "edgeintel": (ours.port, ours.proc.pid, True),
                    "edgeintel (JSON)": (ours.port, ours.proc.pid, False),
                    "edgeintel no batching": (unbatched.port, unbatched.proc.pid, True),
                }
                for p in PEERS:
                    srv = PeerServer(p, onnx, log)
                    started.append(srv)
                    servers[p.label] = (srv.port, srv.proc.pid, p.binary)
                runs = measure(servers)
                ort_us = ort_cost_us(onnx)
            finally:
                for s in reversed(started):
                    s.stop()
    return _targets(runs), {**_details(runs), "ort_cpu_us_per_call": ort_us}


def _targets(runs: dict[str, dict[int, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    b, u = runs["edgeintel"], runs["edgeintel no batching"]
    med = {c: {k: _summary(v[c]) for k, v in runs.items()} for c in CLIENTS}
    out = [
        target(
            "serve: batching speed-up at 64 clients (edgeintel, median of rounds)",
            _paired(b[64], u[64], "throughput_per_s")["median"],
            ">=",
            3,
            "x",
        ),
        target(
            "serve: lone client p50, batching (adaptive wait) / no batching",
            med[1]["edgeintel"]["median_p50_ms"] / med[1]["edgeintel no batching"]["median_p50_ms"],
            "<=",
            1.1,
            "x",
        ),
    ]
    for p in PEERS:
        ours = runs["edgeintel" if p.binary else "edgeintel (JSON)"]
        fmt = "binary" if p.binary else "JSON"
        thr = min(_paired(ours[c], runs[p.label][c], "throughput_per_s")["median"] for c in LOADED)
        p99 = min(_paired(runs[p.label][c], ours[c], "p99_ms")["median"] for c in LOADED)
        out += [
            target(
                f"serve: throughput edgeintel / {p.label}, worst of 8 and 64 clients ({fmt})",
                thr,
                ">=",
                1,
                "x",
            ),
            target(
                f"serve: p99 {p.label} / edgeintel, worst of 8 and 64 clients ({fmt})",
                p99,
                ">=",
                1,
                "x",
            ),
        ]
    return out


def _details(runs: dict[str, dict[int, list[dict[str, Any]]]]) -> dict[str, Any]:
    ratios: dict[str, Any] = {}
    for p in PEERS:
        ours = runs["edgeintel" if p.binary else "edgeintel (JSON)"]
        theirs = runs[p.label]
        ratios[p.label] = {
            f"{c}_clients": {
                "throughput_edgeintel_over_peer": _paired(ours[c], theirs[c], "throughput_per_s"),
                "p99_peer_over_edgeintel": _paired(theirs[c], ours[c], "p99_ms"),
                "server_cpu_per_request_peer_over_edgeintel": _paired(
                    theirs[c], ours[c], "server_cpu_ms_per_request"
                ),
            }
            for c in CLIENTS
        }
    return {
        "model": "zoo image_cnn width 16, 1x8x8 input, untrained (cost does not depend on weights)",
        "servers": {
            "edgeintel": "edgeintel serve, one uvicorn worker, ORT 1 thread, --max-batch-size 32, "
            "adaptive wait (a batch is what queued while the previous one ran)",
            "edgeintel no batching": "the same with --max-batch-size 1",
            **{p.label: p.setup for p in PEERS},
        },
        "load": "benchmarks/_loadgen.py, closed loop, keep-alive, every response decoded and "
        f"checked; {N_REQUESTS} requests per run at 1/8/64 clients, {ROUNDS} rounds, order "
        "rotated each round; binary v2 except MLServer (JSON v2, against edgeintel in JSON)",
        "by_server": {
            k: {f"{c}_clients": _summary(v[c]) for c in CLIENTS} for k, v in runs.items()
        },
        "ratios": ratios,
        "batching_server_cpu_per_request_unbatched_over_batched": {
            f"{c}_clients": _paired(
                runs["edgeintel no batching"][c], runs["edgeintel"][c], "server_cpu_ms_per_request"
            )
            for c in CLIENTS
        },
        "batching_speedup": {
            f"{c}_clients": _paired(
                runs["edgeintel"][c], runs["edgeintel no batching"][c], "throughput_per_s"
            )
            for c in CLIENTS
        },
    }
