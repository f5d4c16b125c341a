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
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeintel.errors import EdgeIntelError
from edgeintel.pipeline.core import RunContext, Stage, register_stage
from edgeintel.pipeline.sections import runtime_section as _section_renderer  # noqa: F401  (registers it)
from edgeintel.runtime.nodes import ServerProcess, drain_upstream, free_port, write_node_config

__all__ = ["RuntimeStage"]


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
        from edgeintel.data.device_data import input_interval_s
        from edgeintel.onnx_files import make_session
        from edgeintel.runtime.agent import DeviceAgent, DeviceStream
        from edgeintel.runtime.repository import add_model
        from edgeintel.runtime.settings import DEVICES, DeployPlacement, parse_address
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
        placements = {d.name: dep.placement_of(d.group) for _, d in devices}
        tokens = _tokens(dep.tokens_file, [d.name for _, d in devices], sc)
        tokens_file = folder / "tokens.json"
        tokens_file.write_text(json.dumps(tokens.to_json()))
        tokens_file.chmod(0o600)
        operator = next(iter(tokens.operators.values()), None)
        interval = input_interval_s(ctx.require_dataset(), rt.rate_hz)
        limit = max(1, math.ceil(dep.duration_s / interval))
        cloud = sc.cloud.name
        uses_cloud = any(
            p in (DeployPlacement.CLOUD, DeployPlacement.PLAN) for p in placements.values()
        )
        serving = sorted({d.attach for _, d in devices} | ({cloud} if uses_cloud else set()))
        run_agents = dep.starts(DEVICES)
        nodes: dict[str, ServerProcess] = {}
        for name in serving:
            if name in dep.addresses:
                host, port = parse_address(dep.addresses[name])
            else:
                host, port = "127.0.0.1", free_port()
            nodes[name] = ServerProcess(name, host, port, remote=not dep.starts(name))
        splits: dict[bytes, Any] = {}
        planner_state = None
        if run_agents and DeployPlacement.PLAN in placements.values():
            planner_state, splits = _planner(ctx, repo, folder / "splits", devices)
        origin_file = folder / "trace_origin"  # t = 0 of the link traces, for the servers
        origin_file.unlink(missing_ok=True)
        origin = time.time()
        agents: list[tuple[DeviceAgent, DeviceStore, Transport]] = []
        links: dict[str, LinkEmulator] = {}
        emulators: list[LinkEmulator] = []
        filters: dict[str, Any] = {}
        plans: dict[str, Any] = {}
        filter_source: dict[str, dict[str, Any]] = {}
        server_stats: dict[str, dict[str, Any]] = {}
        wall = 0.0
        try:
            with ctx.task("Starting servers", total=1) as advance:
                for name, node in nodes.items():
                    if node.remote:
                        continue
                    node_cfg = write_node_config(folder / f"{name}.node.json", sc, name)
                    extra = ["--node-config", str(node_cfg)]
                    if name != cloud and cloud in nodes:
                        extra += ["--upstream", nodes[cloud].address]
                        if dep.emulate_links:
                            extra += [
                                "--emulate-link",
                                "--trace-origin-file",
                                str(origin_file),
                                "--trace-time-scale",
                                repr(dep.trace_time_scale),
                            ]
                    node.start(repo, folder, tokens_file, extra)
                for node in nodes.values():
                    node.wait_ready()
                advance()
            ctx.log(
                f"runtime: servers ready: {', '.join(f'{n} {v.address}' for n, v in nodes.items())}"
            )
            if run_agents:
                session = make_session(ctx.artifact.path)
                for i, d in devices:
                    x, y = ctx.device_arrays(i)
                    if len(x) == 0:
                        continue
                    x = x.astype(np.float32)
                    transport: Transport = HttpTransport(nodes[d.attach].address)
                    em = LinkEmulator(
                        transport,
                        d.link,
                        seed=sc.seed + i,
                        clock=time.time,
                        start=origin,
                        time_scale=dep.trace_time_scale,
                    )
                    emulators.append(em)  # its trace time drives the plan even unshaped
                    if dep.emulate_links:
                        links[d.name] = em
                        transport = em
                    filt, info = _device_filter(ctx, d.name, x, session)
                    if filt is not None:
                        filters[d.name] = filt
                        filter_source[d.name] = info
                    plan = _plan(placements[d.name], d, sc, planner_state, splits, em)
                    plans[d.name] = plan
                    store = DeviceStore(folder / "devices" / f"{d.name}.db", rt.store)
                    agent = DeviceAgent(
                        d.name,
                        DeviceStream(x, y, interval),
                        session,
                        store,
                        transport,
                        model="model",
                        plan=plan,
                        filter=filt,
                        token=tokens.devices[d.name],
                        settings=rt,
                        server_node=d.attach,
                    )
                    agents.append((agent, store, transport))
                ctx.log(f"runtime: {len(agents)} agents ready (filters, plans); starting")
                origin = time.time()  # the traces start with the agents, here and upstream
                origin_file.write_text(repr(origin))
                for em in emulators:
                    em.start = origin
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
                ctx.log(f"runtime: agents done in {wall:.1f} s; forwarding to the cloud")
                drain_upstream(nodes, cloud, operator, dep.drain_timeout_s)
            else:
                with ctx.task(f"Serving {', '.join(nodes)}", total=1) as advance:
                    time.sleep(dep.duration_s + dep.drain_timeout_s)
                    advance()
            for name, node in nodes.items():
                server_stats[name] = node.stats(operator)
            ctx.log("runtime: stopping servers")
        finally:
            for _, _, transport in agents:
                transport.close()
            for node in nodes.values():
                node.stop()
        ctx.results["runtime"] = _section(
            ctx,
            nodes,
            agents,
            links,
            filters,
            filter_source,
            plans,
            server_stats,
            wall,
            interval,
            placements,
        )
        by_placement: dict[str, list[float]] = {}
        for a, _, _ in agents:
            for k, v in a.stats.latency_ms.items():
                by_placement.setdefault(k, []).extend(v)
        for _, store, _ in agents:
            store.close()
        if by_placement:
            ctx.add_figure(
                "runtime",
                "Latency per placement",
                _latency_figure(by_placement),
                "Per-result latency (ms) measured by the device agents: on the device, "
                "offloaded to the edge server or through it to the cloud over the emulated "
                "links, split, local fallback, and reused (filter skipped the input).",
            )
        tl = ctx.results["runtime"]["timeline_per_s"]
        if tl:
            ctx.add_figure(
                "runtime",
                "Placements over the run",
                _timeline_figure(tl, dep.trace_time_scale),
                "Results per second by placement; the top axis is the time of the link "
                "traces (congestion and outages) at the run's trace time scale.",
            )


def _tokens(path: str | Path | None, devices: list[str], sc: Any) -> Any:
    """The deployment's tokens: the shared file when given, else fresh ones for every
    device, every node (relaying results upstream) and one operator."""
    from edgeintel.runtime.auth import Tokens, load_tokens

    if path is not None:
        table = load_tokens(path)
        assert table is not None
        missing = [d for d in devices if d not in table.devices]
        if missing:
            raise EdgeIntelError(
                f"settings.runtime.deploy.tokens_file {path}: no token for "
                f"{', '.join(missing[:3])}{'...' if len(missing) > 3 else ''}"
            )
        return table
    nodes = [sc.cloud.name, *(e.name for e in sc.edge_servers)]
    return Tokens(
        devices={d: secrets.token_urlsafe(24) for d in devices},
        nodes={n: secrets.token_urlsafe(24) for n in nodes},
        operators={"operator": secrets.token_urlsafe(24)},
    )


def _device_filter(
    ctx: RunContext, name: str, x: np.ndarray, session: Any
) -> tuple[Any, dict[str, Any]]:
    """The device's redundancy filter (``caching.filter.AdaptiveFilter``): the threshold the
    caching stage tuned for it, else tuned here on the device's first profiling segment;
    (None, {}) when caching or its filter is off."""
    from edgeintel.runtime.wiring import filter_for_device

    cs = ctx.scenario.settings.caching
    if not (cs.enabled and cs.filter.enabled) or len(x) < 4:
        return None, {}
    return filter_for_device(cs.filter, x, session, ctx.filter_thresholds.get(name))


def _planner(
    ctx: RunContext, repo: Path, folder: Path, devices: list[tuple[int, Any]]
) -> tuple[Any, dict[bytes, Any]]:
    """The offloading planner over the run's model (the offloading stage's profile, or one
    measured now) and every split its options may choose over the link traces: each cut
    into head/tail ONNX, the tail served as ``model_tail_<k>_<hash>``."""
    import hashlib

    from edgeintel.offloading.planner import OffloadPlanner, trace_times
    from edgeintel.offloading.scenario_plan import plan_scenario
    from edgeintel.offloading.split import split_model
    from edgeintel.onnx_files import make_session
    from edgeintel.runtime.repository import add_model
    from edgeintel.runtime.wiring import SplitTail, mask_key

    assert ctx.artifact is not None
    sc = ctx.scenario
    result = ctx.offloading_plan
    if result is None:
        x_te, _ = ctx.test_arrays()
        result = plan_scenario(sc, ctx.artifact.path, folder.parent / "offloading", x_te[:1])
    planner = OffloadPlanner(result.graph, result.profile, sc.settings.offloading)
    initial = {
        name: result.problem.options[d][c].label
        for d, (name, c) in enumerate(zip(result.problem.devices, result.plan.choice, strict=True))
    }
    splits: dict[bytes, Any] = {}
    seen_groups: set[str] = set()
    everyone = {d.name for d in sc.expand_devices()}
    for _, d in devices:
        if d.group in seen_groups:
            continue
        seen_groups.add(d.group)
        excluded = frozenset(
            ({e.name for e in sc.edge_servers} - {d.attach}) | (everyone - {d.name})
        )
        for t in trace_times(sc):
            for o in planner.options(sc, d, t, excluded):
                if o.tier != "hybrid" or o.mask is None or mask_key(o.mask) in splits:
                    continue
                k = int(o.mask.sum())
                tag = hashlib.sha256(mask_key(o.mask)).hexdigest()[:8]
                sm = split_model(ctx.artifact.path, result.graph, o.mask, folder / f"cut{k}_{tag}")
                assert sm.head_path is not None and sm.tail_path is not None
                name = f"model_tail_{k}_{tag}"
                add_model(repo, name, sm.tail_path, 1, labels=ctx.artifact.labels)
                splits[mask_key(o.mask)] = SplitTail(name, make_session(sm.head_path))
    return (planner, initial), splits


def _plan(placement: Any, device: Any, sc: Any, planner_state: Any, splits: Any, link: Any) -> Any:
    from edgeintel.runtime.seams import StaticPlan
    from edgeintel.runtime.settings import DeployPlacement
    from edgeintel.runtime.wiring import AdaptivePlan

    if placement is DeployPlacement.PLAN:
        planner, initial = planner_state
        return AdaptivePlan(
            planner, sc, device, link.trace_time, splits, initial=initial.get(device.name)
        )
    # the same static plans as `edgeintel device --tier` (device, edge, cloud)
    return StaticPlan.for_tier(str(placement), device.attach, sc.cloud.name)


def _section(
    ctx: RunContext,
    nodes: dict[str, ServerProcess],
    agents: list[Any],
    links: dict[str, Any],
    filters: dict[str, Any],
    filter_source: dict[str, dict[str, Any]],
    plans: dict[str, Any],
    server_stats: dict[str, dict[str, Any]],
    wall: float,
    interval: float,
    placements: dict[str, Any],
) -> dict[str, Any]:
    """``results.runtime``: what ran, where, how fast, what was skipped, reused, moved."""
    dep = ctx.scenario.settings.runtime.deploy
    cloud = ctx.scenario.cloud.name
    delivered_at: dict[str, dict[str, int]] = {}
    for n, node in nodes.items():
        if node.remote:  # started elsewhere: what its /v2/stats says it stored
            fleet = (server_stats.get(n) or {}).get("devices") or {}
            delivered_at[n] = {d: int(v.get("results", 0)) for d, v in fleet.items()}
        else:
            delivered_at[n] = node.delivered()
    delivered: dict[str, int] = {}
    for name, counts in delivered_at.items():
        if name == cloud and len(nodes) > 1:
            continue  # results reach the cloud through the edge servers
        for dev, c in counts.items():
            delivered[dev] = delivered.get(dev, 0) + c
    produced = {a.name: store.counters["appended"] for a, store, _ in agents}
    kept = sum(store.size for _, store, _ in agents)
    lost = sum(
        store.counters["dropped"] + store.counters["expired"] + store.counters["rejected"]
        for _, store, _ in agents
    )
    by_placement: dict[str, list[float]] = {}
    by_group: dict[str, dict[str, list[float]]] = {}
    group_of = {d.name: d.group for d in ctx.devices}
    timeline: dict[str, list[int]] = {}
    seconds = math.ceil(dep.duration_s) + 1
    for a, _, _ in agents:
        for k, v in a.stats.latency_ms.items():
            by_placement.setdefault(k, []).extend(v)
            by_group.setdefault(group_of.get(a.name, a.name), {}).setdefault(k, []).extend(v)
        for at_s, placement in a.stats.timeline:
            row = timeline.setdefault(placement, [0] * seconds)
            row[min(int(at_s), seconds - 1)] += 1
    total = sum(produced.values())
    total_delivered = sum(delivered.get(a.name, 0) for a, _, _ in agents)
    hits: dict[str, dict[str, Any]] = {}
    for name, st in server_stats.items():
        if st:
            hits[name] = {
                "requests": st.get("requests", 0),
                "hits_by_tier": st.get("cache_hits_by_tier", {}),
                "hit_ratio": st.get("cache_hit_ratio", 0.0),
            }
    device_links = {
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
    }
    per_link: dict[str, dict[str, int]] = {}
    for a, _, _ in agents:
        if a.name in device_links:
            key = f"devices -> {a.server_node}"
            agg = per_link.setdefault(key, {"bytes_up": 0, "bytes_down": 0, "requests": 0})
            for k in agg:
                agg[k] += device_links[a.name][k]
    for name, st in server_stats.items():
        up = (st.get("links") or {}).get("upstream")
        if up:
            per_link[f"{name} -> {cloud}"] = {
                "bytes_up": up["bytes_up"],
                "bytes_down": up["bytes_down"],
                "requests": up["requests"],
                "failures": up["failures"],
            }
    switches = []
    decisions: dict[str, int] = {}
    for name, plan in plans.items():
        for t, old, new, why in getattr(plan, "switches", []):
            switches.append({"device": name, "trace_t_s": t, "from": old, "to": new, "reason": why})
        for label, n in getattr(plan, "decisions", {}).items():
            decisions[label] = decisions.get(label, 0) + n
    skipped = sum(a.stats.skipped for a, _, _ in agents)
    section: dict[str, Any] = {
        "servers": {
            n: {
                "address": node.address,
                "started_here": not node.remote,
                "exit_code": node.exit_code,
                "delivered": sum(delivered_at[n].values()),
                # the node's own figures (server-side latency, batches) for the calibration
                "stats": {
                    k: v
                    for k, v in (server_stats.get(n) or {}).items()
                    if k in ("requests", "latency_ms", "mean_batch_rows", "batches")
                },
            }
            for n, node in nodes.items()
        },
        "devices": len(agents),
        "placement": {
            str(p): sum(1 for a, _, _ in agents if placements.get(a.name) == p)
            for p in sorted(set(placements.values()))
        },
        "duration_s": dep.duration_s,
        "trace_time_scale": dep.trace_time_scale,
        "wall_s": round(wall, 3),
        "interval_s": interval,
        "produced": total,
        "delivered": total_delivered,
        "undelivered": total - total_delivered,
        "kept_on_devices": kept,
        "dropped_expired_rejected": lost,
        "fallbacks": sum(a.stats.placements.get("device_fallback", 0) for a, _, _ in agents),
        "throughput_per_s": round(total / dep.duration_s, 3),
        "latency_by_placement": {k: _percentiles(v) for k, v in by_placement.items()},
        "latency_by_group": {
            g: {k: _percentiles(v) for k, v in per.items()} for g, per in by_group.items()
        },
        "placements": {k: len(v) for k, v in by_placement.items()},
        "filter": {
            "inputs_skipped": skipped,
            "bytes_not_uploaded": sum(a.stats.bytes_not_uploaded for a, _, _ in agents),
            "skip_fraction": round(skipped / max(1, total), 4),
            "per_device": {
                a.name: {
                    **filter_source[a.name],
                    "threshold_end": round(float(filters[a.name].threshold), 6),
                    "inputs": a.stats.produced + a.stats.rejected,
                    "skipped": a.stats.skipped,
                    "bytes_not_uploaded": a.stats.bytes_not_uploaded,
                }
                for a, _, _ in agents
                if a.name in filters
            },
        },
        "result_cache": hits,
        "plan_switches": switches,
        "plan_decisions": decisions,
        "bytes_per_link": per_link,
        "links": device_links,
        "timeline_per_s": timeline,
    }
    if cloud in delivered_at and len(nodes) > 1:
        section["delivered_to_cloud"] = sum(delivered_at[cloud].values())
    return section


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


def _timeline_figure(timeline: dict[str, list[int]], scale: float) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for k, row in sorted(timeline.items()):
        ax.step(range(len(row)), row, where="post", label=k)
    ax.set_xlabel("run time (s)")
    ax.set_ylabel("results per second")

    def fwd(t: Any) -> Any:
        return np.asarray(t) * scale

    def back(t: Any) -> Any:
        return np.asarray(t) / scale

    top = ax.secondary_xaxis("top", functions=(fwd, back))
    top.set_xlabel("link trace time (s)")
    ax.legend(fontsize=7)
    return fig
