"""The serving benchmarks' harness: ``edgeintel serve`` processes on loopback, the load
generator (benchmarks/_loadgen.py) run as its own process, and what a server process has
spent (CPU time, context switches, from Linux /proc). bench_serve and _peers_serve use it.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeintel.latency import time_calls
from edgeintel.onnx_files import make_session
from edgeintel.runtime.nodes import free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CONCURRENCY = 64

__all__ = [
    "CONCURRENCY",
    "Server",
    "batch_stats",
    "children_cpu_s",
    "context_switches",
    "cpu_s",
    "load",
]


class Server:
    def __init__(self, repo: Path, *extra: str, tls: Any = None) -> None:
        """``tls``: a ``security.pki.TlsFiles`` (mutual TLS on; probes present it)."""
        self.port = free_port()
        if tls is not None:
            extra = (*extra, "--tls-cert", str(tls.cert), "--tls-key", str(tls.key))
            extra = (*extra, "--tls-ca", str(tls.ca))
        scheme = "https" if tls is not None else "http"
        verify: Any = True if tls is None else tls.client_context()
        self.grpc_port = free_port()
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "edgeintel",
                "serve",
                str(repo),
                "--port",
                str(self.port),
                "--grpc-port",
                str(self.grpc_port),
                *extra,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import httpx

        for _ in range(600):
            try:
                url = f"{scheme}://127.0.0.1:{self.port}/v2/health/ready"
                if httpx.get(url, verify=verify).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


#: the served model's input, one sample with its batch axis (``bench_serve.main`` sets it
#: from the default scenario's dataset before any load runs)
INPUT_SHAPE: list[int] = [1, 1, 28, 28]


def load(
    port: int,
    n: int,
    binary: bool = True,
    rate: float | None = None,
    concurrency: int = CONCURRENCY,
    grpc_port: int | None = None,
    tls: Any = None,
) -> dict[str, Any]:
    cfg = {
        "host": "127.0.0.1",
        "port": port,
        "path": "/v2/models/digits/infer",
        "input": "input",
        "input_shape": INPUT_SHAPE,
        "output": "logits",
        "output_shape": [1, 10],
        "binary": binary,
        "requests": n,
        "concurrency": concurrency,
        "rate": rate,
        "protocol": "http" if grpc_port is None else "grpc",
        "grpc_port": grpc_port,
        "tls": None
        if tls is None
        else {"cert": str(tls.cert), "key": str(tls.key), "ca": str(tls.ca)},
    }
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, str(HERE / "_loadgen.py"), json.dumps(cfg)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=300,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def batch_stats(port: int) -> dict[str, float]:
    """ONNX Runtime calls and rows so far, from the server's /metrics."""
    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    vals = {}
    for line in text.splitlines():
        for k in ("edgeintel_batch_size_count", "edgeintel_batch_size_sum"):
            if line.startswith(k + "{"):
                vals[k] = float(line.rsplit(" ", 1)[1])
    calls, rows = vals.get("edgeintel_batch_size_count", 0.0), vals["edgeintel_batch_size_sum"]
    return {"ort_calls": calls, "rows": rows, "mean_batch_rows": rows / calls if calls else 0.0}


def children_cpu_s() -> float:
    """CPU seconds (user + system) this process's finished children have used."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def context_switches(pid: int) -> int:
    """Context switches (voluntary and not) of a process's live threads so far (Linux
    /proc): each is a thread put to sleep or preempted and woken again."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        for line in status.splitlines():
            if "ctxt_switches:" in line:
                total += int(line.split(":")[1])
    return total


def ort_ms_per_sample(onnx: Path, batches: tuple[int, ...] = (1, 4, 8, 32)) -> dict[str, float]:
    """ONNX Runtime's own cost per sample (ms, one thread: the median call over windows
    that agree, ``latency.time_calls``, divided by the batch) at each batch size: what
    batching can save inside the model, apart from the server's per-request path."""
    sess = make_session(onnx)
    name = sess.get_inputs()[0].name
    out = {}
    for b in batches:
        feed = {name: np.random.default_rng(0).random((b, *INPUT_SHAPE[1:]), dtype=np.float32)}
        stats = time_calls(lambda f=feed: sess.run(None, f), max(10, 400 // b), 10, windows=3)
        out[str(b)] = stats.p50_ms / b
    return out
