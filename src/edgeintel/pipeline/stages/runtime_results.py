"""What the ``runtime`` stage records: the deployment it ran (``Deployment``), the
``results.runtime`` section built from it (latency per placement and per group,
delivered vs produced, filter, result cache, plan switches, bytes per link, a
timeline) and its two figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeintel.pipeline.core import RunContext
from edgeintel.runtime.nodes import ServerProcess

__all__ = [
    "Deployment",
    "latency_figure",
    "outage_windows",
    "percentiles",
    "runtime_section",
    "served_in_windows",
    "timeline_figure",
]


@dataclass
class Deployment:
    """One deployment's working state: the nodes started (or reached), the agents with
    their stores and transports, their links, filters and plans, and what was measured."""

    nodes: dict[str, ServerProcess]
    placements: dict[str, Any]  # device name -> DeployPlacement
    interval: float  # s between a device's inputs
    agents: list[tuple[Any, Any, Any]] = field(default_factory=list)  # agent, store, transport
    links: dict[str, Any] = field(default_factory=dict)  # device -> its shaping LinkEmulator
    emulators: list[Any] = field(default_factory=list)  # every device's emulator (trace clock)
    filters: dict[str, Any] = field(default_factory=dict)
    filter_source: dict[str, dict[str, Any]] = field(default_factory=dict)
    plans: dict[str, Any] = field(default_factory=dict)
    server_stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    wall: float = 0.0  # s the agents ran
    pki: Any = None  # security.pki.DeploymentPki under mutual TLS, None for plaintext
    lifecycle: dict[str, Any] | None = None  # the rollouts of deploy.lifecycle
    retrain: dict[str, Any] | None = None  # the retrain loop's record (lifecycle.retrain)
    churn: list[dict[str, Any]] | None = None  # deploy.churn as played
    reopen: dict[str, Any] = field(default_factory=dict)  # device -> opens its store again
    peers: dict[str, Any] = field(default_factory=dict)  # helper device -> its PeerService
    d2d_links: dict[str, Any] = field(default_factory=dict)  # "a -> b" -> D2D LinkEmulator


def percentiles(values: list[float]) -> dict[str, float]:
    """n, p50, p95, p99 of latencies in ms ({} for none)."""
    if not values:
        return {}
    a = np.asarray(values)
    return {
        "n": len(values),
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p95_ms": round(float(np.percentile(a, 95)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
    }


def runtime_section(ctx: RunContext, d: Deployment) -> dict[str, Any]:
    """``results.runtime``: what ran, where, how fast, what was skipped, reused, moved."""
    dep = ctx.scenario.settings.runtime.deploy
    cloud = ctx.scenario.cloud.name
    delivered_at: dict[str, dict[str, int]] = {}
    for n, node in d.nodes.items():
        if node.remote:  # started elsewhere: what its /v2/stats says it stored
            fleet = (d.server_stats.get(n) or {}).get("devices") or {}
            delivered_at[n] = {d: int(v.get("results", 0)) for d, v in fleet.items()}
        else:
            delivered_at[n] = node.delivered()
    delivered: dict[str, int] = {}
    for name, counts in delivered_at.items():
        if name == cloud and len(d.nodes) > 1:
            continue  # results reach the cloud through the edge servers
        for dev, c in counts.items():
            delivered[dev] = delivered.get(dev, 0) + c
    produced = {a.name: store.counters["appended"] for a, store, _ in d.agents}
    kept = sum(store.size for _, store, _ in d.agents)
    lost = sum(
        store.counters["dropped"] + store.counters["expired"] + store.counters["rejected"]
        for _, store, _ in d.agents
    )
    by_placement: dict[str, list[float]] = {}
    by_group: dict[str, dict[str, list[float]]] = {}
    group_of = {dv.name: dv.group for dv in ctx.devices}
    timeline: dict[str, list[int]] = {}
    seconds = math.ceil(dep.duration_s) + 1
    for a, _, _ in d.agents:
        for k, v in a.stats.latency_ms.items():
            by_placement.setdefault(k, []).extend(v)
            by_group.setdefault(group_of.get(a.name, a.name), {}).setdefault(k, []).extend(v)
        for placement, per_s in a.stats.timeline.items():
            row = timeline.setdefault(placement, [0] * seconds)
            for at_s, n in per_s.items():
                row[min(at_s, seconds - 1)] += n
    per_placement: dict[str, int] = {}  # results (the latencies are a sample of them)
    for a, _, _ in d.agents:
        for k, n in a.stats.placements.items():
            per_placement[k] = per_placement.get(k, 0) + n
    total = sum(produced.values())
    total_delivered = sum(delivered.get(a.name, 0) for a, _, _ in d.agents)
    hits: dict[str, dict[str, Any]] = {}
    for name, st in d.server_stats.items():
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
        for name, em in d.links.items()
    }
    per_link: dict[str, dict[str, int]] = {}
    for a, _, _ in d.agents:
        if a.name in device_links:
            key = f"devices -> {a.server_node}"
            agg = per_link.setdefault(key, {"bytes_up": 0, "bytes_down": 0, "requests": 0})
            for k in agg:
                agg[k] += device_links[a.name][k]
    for name, st in d.server_stats.items():
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
    for name, plan in d.plans.items():
        for t, old, new, why in getattr(plan, "switches", []):
            switches.append({"device": name, "trace_t_s": t, "from": old, "to": new, "reason": why})
        for label, n in getattr(plan, "decisions", {}).items():
            decisions[label] = decisions.get(label, 0) + n
    skipped = sum(a.stats.skipped for a, _, _ in d.agents)
    section: dict[str, Any] = {
        "transport": _transport(d, dep),
        "store_encrypted": ctx.scenario.settings.runtime.store.encrypt,
        "servers": {
            n: {
                "address": node.address,
                "started_here": not node.remote,
                "exit_code": node.exit_code,
                "delivered": sum(delivered_at[n].values()),
                # the node's own figures (server-side latency, batches) for the calibration
                "stats": {
                    k: v
                    for k, v in (d.server_stats.get(n) or {}).items()
                    if k in ("requests", "latency_ms", "mean_batch_rows", "batches")
                },
            }
            for n, node in d.nodes.items()
        },
        "devices": len(d.agents),
        "placement": {
            str(p): sum(1 for a, _, _ in d.agents if d.placements.get(a.name) == p)
            for p in sorted(set(d.placements.values()))
        },
        "duration_s": dep.duration_s,
        "trace_time_scale": dep.trace_time_scale,
        "wall_s": round(d.wall, 3),
        "interval_s": d.interval,
        "produced": total,
        "delivered": total_delivered,
        "undelivered": total - total_delivered,
        "kept_on_devices": kept,
        "dropped_expired_rejected": lost,
        "fallbacks": sum(a.stats.placements.get("device_fallback", 0) for a, _, _ in d.agents),
        "throughput_per_s": round(total / dep.duration_s, 3),
        "latency_by_placement": {k: percentiles(v) for k, v in by_placement.items()},
        "latency_by_group": {
            g: {k: percentiles(v) for k, v in per.items()} for g, per in by_group.items()
        },
        "placements": per_placement,
        # agents per device runtime (the profile's; local inference ran in it)
        "device_runtimes": _runtimes_of(ctx, [a.name for a, _, _ in d.agents]),
        "filter": {
            "inputs_skipped": skipped,
            "bytes_not_uploaded": sum(a.stats.bytes_not_uploaded for a, _, _ in d.agents),
            "skip_fraction": round(skipped / max(1, total), 4),
            "per_device": {
                a.name: {
                    **d.filter_source[a.name],
                    "threshold_end": round(float(d.filters[a.name].threshold), 6),
                    "inputs": a.stats.produced + a.stats.rejected,
                    "skipped": a.stats.skipped,
                    "bytes_not_uploaded": a.stats.bytes_not_uploaded,
                }
                for a, _, _ in d.agents
                if a.name in d.filters
            },
            # devices where the filter stands aside: it would cost more than it saves
            "stands_aside": sorted(
                n for n, info in d.filter_source.items() if info.get("stands_aside")
            ),
        },
        "result_cache": hits,
        "plan_switches": switches,
        "plan_decisions": decisions,
        "bytes_per_link": per_link,
        "links": device_links,
        "timeline_per_s": timeline,
    }
    if cloud in delivered_at and len(d.nodes) > 1:
        section["delivered_to_cloud"] = sum(delivered_at[cloud].values())
    if d.churn is not None:
        section["churn"] = {
            "events": d.churn,
            **{f"{a}s": sum(1 for e in d.churn if e["action"] == a and "error" not in e)
               for a in ("join", "leave", "reboot")},
        }  # fmt: skip
    windows = outage_windows(ctx.scenario, dep.duration_s * dep.trace_time_scale)
    if windows:
        section["outage"] = served_in_windows(_trace_timeline(d, dep.trace_time_scale), windows)
    if d.lifecycle is not None or d.retrain is not None:
        section["lifecycle"] = {
            **(d.lifecycle or {}),
            **({} if d.retrain is None else {"retrain": d.retrain}),
            # each agent's versions over the run: (s since its start, version) per swap
            "swaps": {
                a.name: [[round(t - (a.started or t), 3), v] for t, v in a.versions]
                for a, _, _ in d.agents
                if a.versions
            },
            "final_versions": {a.name: a.active.version for a, _, _ in d.agents},
        }
    return section


def outage_windows(scenario: Any, horizon_s: float) -> list[tuple[float, float]]:
    """Trace-time intervals [start, end) s within ``horizon_s`` in which some link of the
    scenario (a backhaul or a device's own) has bandwidth 0, merged and sorted."""
    links = [*scenario.links, *(dv.link for dv in scenario.expand_devices())]
    spans = []
    for link in links:
        points = link.trace_points()
        for k, p in enumerate(points):
            if p.bandwidth_mbps == 0 and p.t_s < horizon_s:
                end = points[k + 1].t_s if k + 1 < len(points) else horizon_s
                spans.append((float(p.t_s), float(min(end, horizon_s))))
    merged: list[tuple[float, float]] = []
    for lo, hi in sorted(spans):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def served_in_windows(
    results: list[tuple[float, str, int, int]], windows: list[tuple[float, float]]
) -> dict[str, Any]:
    """Results as (trace time s, placement, count, count correct) rows, inside and outside
    the outage ``windows``: counts, counts per placement and the share right, each side."""
    inside = [r for r in results if any(lo <= r[0] < hi for lo, hi in windows)]
    outside = [r for r in results if not any(lo <= r[0] < hi for lo, hi in windows)]

    def side(rows: list[tuple[float, str, int, int]]) -> dict[str, Any]:
        by: dict[str, int] = {}
        for _, placement, n, _ in rows:
            by[placement] = by.get(placement, 0) + n
        total = sum(r[2] for r in rows)
        right = sum(r[3] for r in rows)
        return {
            "results": total,
            "by_placement": dict(sorted(by.items())),
            "accuracy": round(right / total, 4) if total else None,
        }

    return {
        "windows_trace_s": [[round(lo, 3), round(hi, 3)] for lo, hi in windows],
        "during": side(inside),
        "outside": side(outside),
    }


def _trace_timeline(d: Deployment, scale: float) -> list[tuple[float, str, int, int]]:
    """Every agent's results per placement and second on the link-trace clock: the traces
    start with the agents (``_run_agents`` sets every emulator's origin as it starts them),
    so second ``s`` of an agent's run is trace time ``s * scale`` (to the second)."""
    return [
        (s * scale, placement, n, a.stats.right.get(placement, {}).get(s, 0))
        for a, _, _ in d.agents
        for placement, per_s in a.stats.timeline.items()
        for s, n in per_s.items()
    ]


def _runtimes_of(ctx: RunContext, agents: list[str]) -> dict[str, int]:
    """How many of ``agents`` ran their local model in each runtime."""
    runtime = {dv.name: dv.profile.runtime for dv in ctx.scenario.expand_devices()}
    counts: dict[str, int] = {}
    for name in agents:
        counts[runtime[name]] = counts.get(runtime[name], 0) + 1
    return dict(sorted(counts.items()))


def _transport(d: Deployment, dep: Any) -> dict[str, Any]:
    """How the hops were protected: mutual TLS (the CA, certificates issued) or plaintext
    because the user turned ``deploy.tls`` off (said, never silent)."""
    if d.pki is None:
        return {
            "tls": False,
            "note": "plaintext: settings.runtime.deploy.tls is false; tokens, inputs and "
            "results crossed every hop unencrypted",
        }
    return {
        "tls": True,
        "mutual": True,
        "ca": "settings.runtime.deploy.tls_ca" if dep.tls_ca is not None else "scenario CA",
        "certificates": d.pki.certificates,
        "files": "runtime/pki (keys 0600)",
    }


def latency_figure(by_placement: dict[str, list[float]]) -> Any:
    """Histogram of per-result latency (ms) per placement."""
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


def timeline_figure(timeline: dict[str, list[int]], scale: float) -> Any:
    """Results per second by placement; top axis in link-trace seconds (``scale``)."""
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
