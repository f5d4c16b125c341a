"""Serving against Triton, KServe and MLServer, side by side (issue 25, item 3).

edgeintel's side: ``edgeintel serve`` processes (one uvicorn worker, ONNX Runtime with one
intra-op thread) on bench_serve's model (zoo ``image_cnn``, width 16, 1x8x8 input), one
with dynamic batching (up to 32 rows, adaptive wait: a request that finds the queue empty
is dispatched at once) and one without (batch 1), loaded by bench_serve's load generator
(benchmarks/_loadgen.py, binary v2 requests, every response decoded and checked) at 1, 8
and 64 closed-loop clients, interleaved over ROUNDS rounds (order flipped each round);
medians are reported with every round.

The peers: none can be installed beside the pinned packages, so each peer's targets are
recorded as not measured (value 0, missed) with the reason in details; they are never
dropped. A peer whose package is importable has no driver here yet: the run raises rather
than reporting a comparison it did not make.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from _common import target

ROUNDS = 3
N_REQUESTS = {1: 300, 8: 1500, 64: 3000}

# checked on this machine on 2026-12-05 with pip's resolver, the installed versions pinned
# as constraints (numpy 2.4.6, pandas 3.0.6, fastapi 0.138.2, starlette 1.3.1, psutil 7.2.2)
PEERS: dict[str, dict[str, str]] = {
    "Triton (PyTriton)": {
        "module": "pytriton",
        "reason": (
            "nvidia-pytriton 0.7.0 (the latest) requires numpy<2: pip would install "
            "numpy-1.26.4 over the pinned 2.4.6. 0.5.7, the newest that resolves beside "
            "numpy 2.4.6, was installed and tried: its Python-backend stub links the system "
            "libpython3.11 (RLock has no _recursion_count; fixed with LD_LIBRARY_PATH), and then "
            "every inference returns an empty output tensor (HTTP 500 'output tensor shape does "
            "not match size of output for y'), so it was uninstalled"
        ),
    },
    "KServe Python server": {
        "module": "kserve",
        "reason": (
            "pip: 'Cannot install kserve==0.7.0 ... kserve==0.21.0 because these package "
            "versions have conflicting dependencies. ResolutionImpossible'; kserve 0.21.0 "
            "requires pandas<3 (installed 3.0.6) and psutil<6 (installed 7.2.2)"
        ),
    },
    "MLServer": {
        "module": "mlserver",
        "reason": (
            "mlserver 1.7.1 requires fastapi<0.116 and starlette<0.47: pip would install "
            "fastapi-0.115.14 and starlette-0.46.2 over 0.138.2 and 1.3.1, which edgeintel's "
            "server runs on; 1.2.1, the newest that resolves beside them, fails at import under "
            "pydantic 2 ('To define root models, use pydantic.RootModel rather than a field "
            "called __root__'), so it was uninstalled"
        ),
    },
}


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return float(np.median([r[key] for r in runs]))


def _edgeintel(repo: Path) -> dict[str, Any]:
    from bench_serve import Server, load

    common = ["--max-queue-delay-us", "2000", "--queue-capacity", "4096"]
    servers = {
        "batching": Server(repo, "--max-batch-size", "32", *common),
        "no_batching": Server(repo, "--max-batch-size", "1", *common),
    }
    out: dict[str, Any] = {}
    try:
        for srv in servers.values():
            load(srv.port, 300)  # warm-up
        runs: dict[str, dict[int, list[dict[str, Any]]]] = {
            m: {c: [] for c in N_REQUESTS} for m in servers
        }
        for r in range(ROUNDS):
            order = list(servers) if r % 2 == 0 else list(reversed(servers))
            for clients, n in N_REQUESTS.items():
                for mode in order:
                    runs[mode][clients].append(load(servers[mode].port, n, concurrency=clients))
        for mode, by_clients in runs.items():
            out[mode] = {
                f"{c}_clients": {
                    "median_throughput_per_s": _median(rs, "throughput_per_s"),
                    "median_p50_ms": _median(rs, "p50_ms"),
                    "median_p99_ms": _median(rs, "p99_ms"),
                    "failed": sum(x["failed"] for x in rs),
                    "rounds": rs,
                }
                for c, rs in by_clients.items()
            }
    finally:
        for srv in servers.values():
            srv.stop()
    return out


def run() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    present = [p for p, v in PEERS.items() if importlib.util.find_spec(v["module"]) is not None]
    if present:
        raise SystemExit(f"_peers_serve: {present} installed but not driven yet; add a driver")
    import torch

    from edgeintel.models import build_model, export_onnx
    from edgeintel.runtime.repository import add_model

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="peers-serve-") as d:
        onnx = Path(d) / "digits.onnx"
        export_onnx(
            build_model("image_cnn", (1, 8, 8), 10, width=16),
            (1, 8, 8),
            onnx,
            labels=[str(i) for i in range(10)],
        )
        add_model(Path(d) / "repo", "digits", onnx, 1)
        ours = _edgeintel(Path(d) / "repo")
    b, u = ours["batching"], ours["no_batching"]
    targets = [
        target(
            "serve: batching speed-up at 64 clients (edgeintel, median of rounds)",
            b["64_clients"]["median_throughput_per_s"] / u["64_clients"]["median_throughput_per_s"],
            ">=",
            3,
            "x",
        ),
        target(
            "serve: lone client p50, batching (adaptive wait) / no batching",
            b["1_clients"]["median_p50_ms"] / u["1_clients"]["median_p50_ms"],
            "<=",
            1.1,
            "x",
        ),
    ]
    for peer in PEERS:
        targets += [
            target(
                f"serve: throughput edgeintel / {peer}, worst of 8 and 64 clients (not measured)",
                0,
                ">=",
                1,
                "x",
            ),
            target(
                f"serve: p99 {peer} / edgeintel, worst of 8 and 64 clients (not measured)",
                0,
                ">=",
                1,
                "x",
            ),
        ]
    details = {
        "model": "zoo image_cnn width 16, 1x8x8 input, untrained (cost does not depend on weights)",
        "edgeintel": ours,
        "servers": (
            "edgeintel serve, one uvicorn worker, ORT 1 thread; batching: --max-batch-size 32, "
            "--max-queue-delay-us 2000 with the adaptive wait; no_batching: --max-batch-size 1"
        ),
        "load": "benchmarks/_loadgen.py, binary v2 requests, closed loop, keep-alive",
        "peers": {p: {"measured": False, "reason": v["reason"]} for p, v in PEERS.items()},
    }
    return targets, details
