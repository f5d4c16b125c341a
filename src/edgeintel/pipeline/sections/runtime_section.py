"""Report renderer of the ``runtime`` section: the deployed system as it ran.

Latency per placement, result cache hits per tier at each server, inputs the
device filters skipped (and bytes not uploaded), the adaptive plans' switches
over the link traces' timeline (outages included), bytes per link (device ->
edge, edge -> cloud), results delivered vs produced. Headline: results
delivered, throughput, bytes per link tier; warnings when results were lost or
left undelivered, or when a server did not stop cleanly.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from edgeintel.report.figures import Figure
from edgeintel.report.sections import RenderContext, details, kv_table, register_section, table

__all__ = ["render_runtime"]


def _overview(data: dict[str, Any]) -> dict[str, Any]:
    filt = data.get("filter") or {}
    tr = data.get("transport") or {}
    out = {
        "transport": None
        if not tr
        else (
            f"mutual TLS ({tr.get('ca')}, {tr.get('certificates')} certificates)"
            if tr.get("tls")
            else "PLAINTEXT (deploy.tls: false)"
        ),
        "devices (agents)": data.get("devices"),
        "device stores encrypted at rest": data.get("store_encrypted"),
        "placement per device": ", ".join(
            f"{k} x{v}" for k, v in (data.get("placement") or {}).items()
        )
        if isinstance(data.get("placement"), dict)
        else data.get("placement"),
        "duration (s)": data.get("duration_s"),
        "link trace time scale": data.get("trace_time_scale"),
        "results produced": data.get("produced"),
        "results delivered (exactly once)": data.get("delivered"),
        "delivered on to the cloud": data.get("delivered_to_cloud"),
        "kept on devices (undelivered)": data.get("kept_on_devices"),
        "dropped / expired / rejected": data.get("dropped_expired_rejected"),
        "local fallbacks": data.get("fallbacks"),
        "throughput (results/s)": data.get("throughput_per_s"),
        "inputs skipped by the filter": filt.get("inputs_skipped"),
        "bytes not uploaded (filter)": filt.get("bytes_not_uploaded"),
        "plan switches": len(data.get("plan_switches") or []),
    }
    return {k: v for k, v in out.items() if v is not None}


def _cache_rows(hits: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for server, v in hits.items():
        tiers = v.get("hits_by_tier") or {}
        rows.append(
            {
                "server": server,
                "infer requests": v.get("requests"),
                "exact hits": tiers.get("exact", 0),
                "approximate hits": tiers.get("approx", 0),
                "hit ratio": v.get("hit_ratio"),
            }
        )
    return rows


@register_section("runtime", title="Runtime", order=90)
def render_runtime(data: dict[str, Any], figures: list[Figure], ctx: RenderContext) -> Markup:
    parts: list[Markup] = [kv_table(_overview(data))]
    figs = {f.title: f for f in figures}
    lat = data.get("latency_by_placement") or {}
    if lat:
        parts.append(
            table(
                lat,
                index="placement",
                caption="Latency per placement, measured by the device agents (ms)",
            )
        )
    if "Latency per placement" in figs:
        parts.append(ctx.figure(figs["Latency per placement"]))
    hits = data.get("result_cache") or {}
    if hits:
        parts.append(table(_cache_rows(hits), caption="Result cache hits per tier at each server"))
    per_link = data.get("bytes_per_link") or {}
    if per_link:
        parts.append(table(per_link, index="link", caption="Bytes per link (emulated)"))
    filt = (data.get("filter") or {}).get("per_device") or {}
    if filt:
        parts.append(
            details(
                f"Redundancy filter on {len(filt)} devices",
                table(filt, index="device", caption="Inputs skipped per device"),
            )
        )
    switches = data.get("plan_switches") or []
    if switches:
        parts.append(
            table(
                switches,
                caption="Plan switches (adaptive policy) over the link traces' timeline",
            )
        )
    outage = data.get("outage") or {}
    if outage:
        parts.append(_outage_table(outage))
    decisions = data.get("plan_decisions") or {}
    if decisions:
        parts.append(kv_table(decisions, caption="Requests per planner option"))
    if "Placements over the run" in figs:
        parts.append(ctx.figure(figs["Placements over the run"]))
    d2d = data.get("d2d") or {}
    if d2d.get("helpers"):
        rows = [
            {"helper": h, "requester": r, "requests served": n}
            for h, per in d2d["served"].items() for r, n in per.items()
        ]  # fmt: skip
        link = d2d["link"]
        caption = (
            f"D2D: neighbours' work executed by helper devices' agents "
            f"({d2d['requests_served']} requests; D2D link {link['bandwidth_mbps']} Mbit/s, "
            f"{link['rtt_ms']} ms RTT)"
        )
        idle = [{"helper": h, "requester": "", "requests served": 0} for h in d2d["helpers"]]
        parts.append(table(rows or idle, caption=caption))
    life = data.get("lifecycle") or {}
    if life.get("versions"):
        rows = [
            {"version": v["version"], "model": v["what"], "server": name, "outcome": r["state"],
             "decided after (s)": r.get("decided_s"), "reason": r.get("reason") or ""}
            for v in life["versions"] for name, r in v["servers"].items()
        ]  # fmt: skip
        parts.append(table(rows, caption="Rollouts on the running fleet (canary, then all; "
                                         "rolled back when a guard trips)"))  # fmt: skip
        swaps = life.get("swaps") or {}
        if swaps:
            parts.append(
                details(
                    f"Version swaps on {len(swaps)} devices",
                    table({d: {"swaps (s: version)": ", ".join(f"{t}: {v}" for t, v in s)}
                           for d, s in swaps.items()}, index="device"),
                )
            )  # fmt: skip
    parts += _retrain_parts(life.get("retrain") or {})
    churn = data.get("churn") or {}
    if churn.get("events"):
        parts.append(table(churn["events"], caption="Devices joining, leaving and rebooting "
                                                    "during the run (deploy.churn)"))  # fmt: skip
    servers = data.get("servers") or {}
    if servers:
        parts.append(table(servers, index="server", caption="Servers"))
    _headline(ctx, data, per_link)
    return Markup("").join(parts)


def _retrain_parts(re: dict[str, Any]) -> list[Markup]:
    """The retrain loop: drift per group, its rounds (events) and its rollouts' stages."""
    parts: list[Markup] = []
    groups = [
        {"server": n, "group": g, **{k: v for k, v in row.items() if k != "alarmed"}}
        for n, dr in (re.get("drift") or {}).items()
        for g, row in (dr.get("groups") or {}).items()
    ]
    if groups:
        parts.append(table(groups, caption="Drift per device group (label-free monitors)"))
    events = [{k: v for k, v in e.items() if k != "drift"} for e in re.get("events") or []]
    if events:
        parts.append(table(events, caption="Retrain loop: drift -> federated fine-tuning -> "
                                           "signed version -> canary"))  # fmt: skip
    stages = [
        {"server": r["server"], "version": r["version"], "outcome": r["state"],
         "event": t.get("event"), "share": t.get("share"), "reason": t.get("reason") or ""}
        for r in re.get("rollouts") or [] for t in r.get("timeline") or []
    ]  # fmt: skip
    if stages:
        parts.append(table(stages, caption="Rollout stages of the retrained versions"))
    if re.get("error"):
        parts.append(kv_table({"retrain loop error": re["error"]}))
    return parts


def _outage_table(outage: dict[str, Any]) -> Markup:
    """Results served while a link was down, beside the rest of the run."""
    spans = ", ".join(f"{lo:g}-{hi:g} s" for lo, hi in outage.get("windows_trace_s") or [])
    rows = {
        name: {
            "results": v.get("results"),
            "accuracy": v.get("accuracy"),
            "where they ran": ", ".join(f"{k} {n}" for k, n in (v.get("by_placement") or {}).items()),  # noqa: E501
        }
        for name, v in (("during the outage", outage.get("during") or {}),
                        ("rest of the run", outage.get("outside") or {}))
    }  # fmt: skip
    return table(rows, index="", caption=f"Served during the link outage (trace {spans})")


def _headline(ctx: RenderContext, data: dict[str, Any], per_link: dict[str, Any]) -> None:
    h = ctx.headline
    produced, delivered = data.get("produced", 0), data.get("delivered", 0)
    h.fact(
        "runtime",
        f"{data.get('devices')} device agents, {produced} results produced, {delivered} "
        f"delivered, {data.get('throughput_per_s')} results/s",
    )
    for link, v in per_link.items():
        tier = "edge ↔ cloud" if "cloud" in link.split("->")[-1] else "device ↔ edge"
        h.tier(tier, f"bytes sent (runtime, {link})", v.get("bytes_up", 0))
    during = (data.get("outage") or {}).get("during") or {}
    if during:
        h.fact(
            "runtime",
            f"{during.get('results')} results served during the link outage "
            f"(accuracy {during.get('accuracy')})",
        )
    tr = data.get("transport") or {}
    if tr and not tr.get("tls"):
        ctx.warn(f"runtime: {tr.get('note')}")
    if data.get("dropped_expired_rejected"):
        ctx.warn(
            f"runtime: {data['dropped_expired_rejected']} results dropped, expired or rejected "
            "by the device stores (settings.runtime.store)"
        )
    if data.get("kept_on_devices"):
        ctx.warn(
            f"runtime: {data['kept_on_devices']} results were still queued on the devices "
            "when the run ended (raise deploy.drain_timeout_s)"
        )
    bad = [
        n
        for n, s in (data.get("servers") or {}).items()
        if s.get("started_here", True) and s.get("exit_code") not in (0, -15, None)
    ]
    if bad:
        ctx.warn(f"runtime: server(s) {', '.join(bad)} did not stop cleanly")
