"""The long soak of bench_lifecycle (issue 22): a fleet held for ``seconds`` (30 min).

Real processes on loopback: one ``edgeintel serve`` node (signatures checked, a result
sink) and ``HOSTS`` agent-host processes (``_fleet.py``) running ``AGENTS`` device agents
in all, each streaming held-out MNIST digits at ``RATE_HZ`` to its local model and
delivering its results through its SQLite store. Every ``SAMPLE_S`` seconds the resident
set size and the open file descriptors of the node and of every host are read from
/proc. Growth is the value at the end over the value after ``WARMUP_S`` of warm-up. At the
end the hosts stop producing and deliver what they still hold. A result counts as lost
when one of a device's stream indices is missing from the node's sink, or when it is left
undelivered in a store.

Not part of ``make test``. Run it by hand, alone on the machine if possible:

    python benchmarks/bench_lifecycle.py --soak 1800

It replaces the soak targets in benchmarks/results/lifecycle.json and keeps the others.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

AGENTS, HOSTS, RATE_HZ = 40, 2, 2.0
SAMPLE_S, WARMUP_S = 10.0, 60.0

__all__ = ["AGENTS", "HOSTS", "RATE_HZ", "WARMUP_S", "soak"]


def _proc_figures(pid: int) -> tuple[int, int]:
    """(RSS KiB, open file descriptors) of a process, from /proc (0, 0 when it is gone)."""
    try:
        rss = next(
            int(line.split()[1])
            for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith("VmRSS:")
        )
        return rss, len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, StopIteration):
        return 0, 0


def _growth(base: list[int], end: list[int]) -> list[float]:
    return [round(e / b - 1.0, 4) if b else float("inf") for b, e in zip(base, end, strict=True)]


def soak(work: Path, seconds: float) -> dict[str, Any]:
    """Hold the fleet for ``seconds``; what was measured (see the module doc)."""
    from _fleet import ROOT, Server, linear_onnx
    from edgeintel.data import load_dataset
    from edgeintel.runtime.repository import add_model
    from edgeintel.security.signing import generate_signing_key, load_signing_key

    data = load_dataset("mnist")
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(data.x))
    x, y = data.x[perm].astype(np.float32), np.asarray(data.y)[perm].astype(np.int64)
    pub = generate_signing_key(work / "keys" / "signing.key")
    onnx = linear_onnx(work / "v1.onnx", x[:2000], y[:2000])
    add_model(
        work / "repo", "digits", onnx, 1, signer=load_signing_key(work / "keys" / "signing.key")
    )
    np.savez(work / "pool.npz", x=x[3000:], y=y[3000:])
    server = Server(work / "repo", work, "--sink", str(work / "sink.db"), "--verify-key", str(pub))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    script = str(Path(__file__).parent / "_fleet.py")
    names = [(f"dev-{i:03d}", i) for i in range(AGENTS)]
    hosts: list[subprocess.Popen[bytes]] = []
    samples: list[dict[str, Any]] = []
    t0 = time.monotonic()
    try:
        for h in range(HOSTS):
            cfg = {
                "url": server.url, "devices": names[h::HOSTS], "fleet": AGENTS,
                "pool": str(work / "pool.npz"), "onnx": str(onnx), "verify_key": str(pub),
                "rate_hz": RATE_HZ, "duration_s": seconds + 600, "dir": str(work / "agents"),
                "out": str(work / f"host{h}.json"), "stop": str(work / "stop"),
            }  # fmt: skip
            (work / f"host{h}.cfg").write_text(json.dumps(cfg))
            hosts.append(
                subprocess.Popen([sys.executable, script, str(work / f"host{h}.cfg")], env=env)
            )
        procs = [server.proc, *hosts]
        while time.monotonic() - t0 < seconds:
            figs = [_proc_figures(p.pid) for p in procs]
            samples.append({
                "t_s": round(time.monotonic() - t0, 1),
                "rss_kib": [f[0] for f in figs],
                "fds": [f[1] for f in figs],
            })  # fmt: skip
            if any(p.poll() is not None for p in procs):
                raise RuntimeError("a fleet process ended during the soak")
            time.sleep(SAMPLE_S)
        figs = [_proc_figures(p.pid) for p in procs]
        samples.append({"t_s": round(time.monotonic() - t0, 1),
                        "rss_kib": [f[0] for f in figs], "fds": [f[1] for f in figs]})  # fmt: skip
        (work / "stop").write_text("")
        for p in hosts:
            p.wait(300)
    finally:
        (work / "stop").write_text("")
        for p in hosts:
            if p.poll() is None:
                p.kill()
        server.stop()
    agents: dict[str, Any] = {}
    for h in range(HOSTS):
        agents.update(json.loads((work / f"host{h}.json").read_text()))
    db = sqlite3.connect(work / "sink.db")
    rows = db.execute(
        "SELECT device, COUNT(*), MAX(CAST(substr(key, length(device) + 2) AS INTEGER)) "
        "FROM results GROUP BY device"
    )
    per = {d: (int(n), int(top) + 1) for d, n, top in rows}
    db.close()
    base = next(s for s in samples if s["t_s"] >= WARMUP_S)
    end = samples[-1]
    rss_growth = _growth(base["rss_kib"], end["rss_kib"])
    fd_growth = _growth(base["fds"], end["fds"])
    return {
        "seconds": round(end["t_s"], 1),
        "warmup_s": WARMUP_S,
        "fleet": f"{AGENTS} agents in {HOSTS} agent-host processes at {RATE_HZ} inputs/s, one "
        "edgeintel serve node (signatures checked, result sink), loopback",
        "processes": ["node"] + [f"agent host {i}" for i in range(HOSTS)],
        "rss_kib_after_warmup": base["rss_kib"],
        "rss_kib_end": end["rss_kib"],
        "rss_growth": rss_growth,
        "max_rss_growth": max(rss_growth),
        "fds_after_warmup": base["fds"],
        "fds_end": end["fds"],
        "fd_growth": fd_growth,
        "max_fd_growth": max(fd_growth),
        "max_fds": [max(s["fds"][i] for s in samples) for i in range(len(base["fds"]))],
        "devices": len(per),
        "produced": sum(top for _, top in per.values()),
        "stored": sum(n for n, _ in per.values()),
        "lost": sum(top - n for n, top in per.values())
        + sum(a["undelivered"] for a in agents.values()),
        "rejected": sum(a["rejected"] for a in agents.values()),
        "samples": samples,
    }
