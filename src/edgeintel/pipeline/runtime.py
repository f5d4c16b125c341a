"""The ``runtime`` stage: deploy the scenario on this machine and measure it running.

When ``settings.runtime.deploy.enabled``: the run's model goes into a model
repository; one ``edgeintel serve`` process per serving node (each edge server
with devices attached, or the cloud) starts on loopback with a bearer token per
device and a result sink; every device runs as an agent (threads in this
process) replaying its share of the data at the real rate through its
emulated link, offloading per the placement and falling back locally; then the
servers get SIGTERM (graceful) and the section records latency per placement,
throughput, bytes per link, results delivered vs produced and a timeline.
Servers are stopped in ``finally`` (Ctrl-C or a failing component included).
"""

from __future__ import annotations

import json
import math
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeintel.errors import EdgeIntelError
from edgeintel.pipeline.core import RunContext, Stage, register_stage

__all__ = ["RuntimeStage"]


def _die_with_parent() -> None:
    """In the child (Linux): get SIGTERM when the parent dies, even by SIGKILL, so no
    server outlives the run (elsewhere the ``finally`` in the stage is the only guard)."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Node:
    """One ``edgeintel serve`` child process."""

    def __init__(self, name: str, repo: Path, folder: Path, tokens: Path) -> None:
        self.name = name
        self.port = _free_port()
        self.sink = folder / f"{name}.sink.db"
        self.log = folder / f"{name}.log"
        args = [
            sys.executable,
            "-m",
            "edgeintel",
            "serve",
            str(repo),
            "--port",
            str(self.port),
            "--tokens",
            str(tokens),
            "--sink",
            str(self.sink),
        ]
        src = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ, OMP_NUM_THREADS="1")
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=log, env=env, preexec_fn=_die_with_parent
            )

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EdgeIntelError(f"server {self.name} exited; see {self.log}")
            try:
                url = f"http://127.0.0.1:{self.port}/v2/health/ready"
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise EdgeIntelError(f"server {self.name} not ready within {timeout_s} s; see {self.log}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def stats(self) -> dict[str, Any]:
        """The node's own figures (``/v2/stats``: server-side latency percentiles, batches),
        read before it stops; empty when it does not answer."""
        import httpx

        try:
            r = httpx.get(f"http://127.0.0.1:{self.port}/v2/stats", timeout=5)
            return dict(r.json()) if r.status_code == 200 else {}
        except (httpx.HTTPError, ValueError):
            return {}

    def delivered(self) -> dict[str, int]:
        if not self.sink.exists():
            return {}
        db = sqlite3.connect(self.sink)
        try:
            return dict(db.execute("SELECT device, COUNT(*) FROM results GROUP BY device"))
        finally:
            db.close()


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    a = np.asarray(values)
    return {
        "n": len(values),
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p95_ms": round(float(np.percentile(a, 95)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
    }


@register_stage
class RuntimeStage(Stage):
    """Deploy servers and device agents as real processes/threads and measure the system."""

    name = "runtime"
    order = 90
    title = "Runtime"

    def enabled(self, ctx: RunContext) -> bool:
        return bool(ctx.scenario.settings.runtime.deploy.enabled)

    def run(self, ctx: RunContext) -> None:
        from edgeintel.models.export import make_session
        from edgeintel.runtime.agent import DeviceAgent, DeviceStream
        from edgeintel.runtime.repository import add_model
        from edgeintel.runtime.seams import StaticPlan, Tier
        from edgeintel.runtime.store import DeviceStore
        from edgeintel.runtime.transport import HttpTransport, LinkEmulator, Transport

        if ctx.artifact is None:
            raise EdgeIntelError("the runtime stage needs the exported model (export stage)")
        sc = ctx.scenario
        rt = sc.settings.runtime
        dep = rt.deploy
        folder = ctx.run_dir / "runtime"
        (folder / "devices").mkdir(parents=True, exist_ok=True)
        repo = folder / "repo"
        add_model(repo, "model", ctx.artifact.path, 1, labels=ctx.artifact.labels)
        devices = list(enumerate(ctx.devices))[: dep.max_devices]
        tokens = {d.name: secrets.token_urlsafe(24) for _, d in devices}
        tokens_file = folder / "tokens.json"
        tokens_file.write_text(json.dumps(tokens))
        tokens_file.chmod(0o600)
        ds = ctx.require_dataset()
        if ds.fps:
            interval = 1.0 / ds.fps
        elif ds.sampling_rate_hz:
            interval = ds.x.shape[-1] / ds.sampling_rate_hz
        else:
            interval = 1.0 / rt.rate_hz
        limit = max(1, math.ceil(dep.duration_s / interval))
        plan = StaticPlan(tier=Tier.EDGE if str(dep.placement) == "edge" else Tier.DEVICE)
        nodes: dict[str, _Node] = {}
        agents: list[tuple[DeviceAgent, DeviceStore, Transport]] = []
        links: dict[str, LinkEmulator] = {}
        try:
            with ctx.task("Starting servers", total=1) as advance:
                for _, d in devices:
                    if d.attach not in nodes:
                        nodes[d.attach] = _Node(d.attach, repo, folder, tokens_file)
                for node in nodes.values():
                    node.wait_ready()
                advance()
            session = make_session(ctx.artifact.path)
            for i, d in devices:
                x, y = ctx.device_arrays(i)
                if len(x) == 0:
                    continue
                transport: Transport = HttpTransport(f"127.0.0.1:{nodes[d.attach].port}")
                if dep.emulate_links:
                    em = LinkEmulator(transport, d.link, seed=sc.seed + i)
                    links[d.name] = em
                    transport = em
                store = DeviceStore(folder / "devices" / f"{d.name}.db", rt.store)
                agent = DeviceAgent(
                    d.name,
                    DeviceStream(x.astype(np.float32), y, interval),
                    session,
                    store,
                    transport,
                    model="model",
                    plan=plan,
                    token=tokens[d.name],
                    settings=rt,
                )
                agents.append((agent, store, transport))
            with ctx.task(f"Running {len(agents)} device agents", total=1) as advance:
                threads = [
                    threading.Thread(
                        target=a.run,
                        args=(limit, dep.duration_s, dep.drain_timeout_s),
                        name=f"agent-{a.name}",
                        daemon=True,
                    )
                    for a, _, _ in agents
                ]
                t0 = time.perf_counter()
                for t in threads:
                    t.start()
                try:
                    for t in threads:
                        t.join(dep.duration_s + dep.drain_timeout_s + 60)
                finally:
                    for a, _, _ in agents:
                        a.halt()
                wall = time.perf_counter() - t0
                advance()
        finally:
            for _, _, transport in agents:
                transport.close()
            node_stats = {n: node.stats() for n, node in nodes.items()}
            for node in nodes.values():
                node.stop()
        delivered: dict[str, int] = {}
        for node in nodes.values():
            delivered.update(node.delivered())
        produced = {a.name: store.counters["appended"] for a, store, _ in agents}
        kept = sum(store.size for _, store, _ in agents)  # still queued on the devices
        lost = sum(
            store.counters["dropped"] + store.counters["expired"] + store.counters["rejected"]
            for _, store, _ in agents
        )
        for _, store, _ in agents:
            store.close()
        by_placement: dict[str, list[float]] = {}
        by_group: dict[str, dict[str, list[float]]] = {}
        group_of = {d.name: d.group for _, d in devices}
        timeline: dict[str, list[int]] = {}
        seconds = math.ceil(dep.duration_s) + 1
        for a, _, _ in agents:
            for k, v in a.stats.latency_ms.items():
                by_placement.setdefault(k, []).extend(v)
                by_group.setdefault(group_of[a.name], {}).setdefault(k, []).extend(v)
            for at_s, placement in a.stats.timeline:
                row = timeline.setdefault(placement, [0] * seconds)
                row[min(int(at_s), seconds - 1)] += 1
        total_produced = sum(produced.values())
        section = {
            "servers": {
                n: {
                    "port": node.port,
                    "exit_code": node.proc.returncode,
                    "stats": {k: v for k, v in node_stats[n].items() if k != "devices"},
                }
                for n, node in nodes.items()
            },
            "devices": len(agents),
            "placement": str(dep.placement),
            "duration_s": dep.duration_s,
            "wall_s": round(wall, 3),
            "interval_s": interval,
            "produced": total_produced,
            "delivered": sum(delivered.get(a.name, 0) for a, _, _ in agents),
            "undelivered": total_produced - sum(delivered.get(a.name, 0) for a, _, _ in agents),
            "kept_on_devices": kept,
            "dropped_expired_rejected": lost,
            "fallbacks": sum(a.stats.placements.get("device_fallback", 0) for a, _, _ in agents),
            "throughput_per_s": round(total_produced / dep.duration_s, 3),
            "latency_by_placement": {k: _percentiles(v) for k, v in by_placement.items()},
            "latency_by_group": {
                g: {k: _percentiles(v) for k, v in per.items()} for g, per in by_group.items()
            },
            "placements": {k: len(v) for k, v in by_placement.items()},
            "links": {
                name: {
                    "bytes_up": em.stats.bytes_up,
                    "bytes_down": em.stats.bytes_down,
                    "requests": em.stats.requests,
                    "lost": em.stats.lost,
                    "outages": em.stats.outages,
                    "by_endpoint": {
                        k: {"requests": r[0], "bytes_up": r[1], "bytes_down": r[2]}
                        for k, r in sorted(em.stats.by_endpoint.items())
                    },
                }
                for name, em in links.items()
            },
            "timeline_per_s": timeline,
        }
        ctx.results["runtime"] = section
        if by_placement:
            ctx.add_figure(
                "runtime",
                "Latency per placement",
                _latency_figure(by_placement),
                "Per-result latency (ms) measured by the device agents: offloaded to the "
                "edge server over the emulated link, local, and local fallback.",
            )


def _latency_figure(by_placement: dict[str, list[float]]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    for k, v in sorted(by_placement.items()):
        ax.hist(v, bins=40, histtype="step", label=f"{k} (n={len(v)})")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("results")
    ax.legend()
    return fig
