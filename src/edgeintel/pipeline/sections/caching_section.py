"""Report renderer of the ``caching`` section: filter per device, result cache, policies, placement.

Headline: inputs skipped and bytes not uploaded by the device filter, the
result cache's hit ratio per edge server; warnings when reusing a cached result
is slower than recomputing it for this model, when the filter costs more
device time than it saves, or when a device's agreement falls below target.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from edgeintel.report.figures import Figure
from edgeintel.report.sections import RenderContext, details, kv_table, register_section, table

__all__ = ["render_caching"]


def stream_sentence(stream: dict[str, Any]) -> str:
    """The devices' input stream in words (``results.caching.filter.stream``)."""
    k, noise = int(stream.get("frames_per_sample") or 1), float(stream.get("noise") or 0.0)
    if k == 1 and noise == 0:
        return "Device streams: each device sends its shard's samples once, in shard order."
    return (
        f"Device streams (data.stream, synthetic): each real sample of a device's shard is "
        f"held for {k} consecutive frames, every frame with Gaussian sensor noise of standard "
        f"deviation {noise:g}; the filter's skips come from that repetition."
    )


def _filter_rows(per_device: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, v in per_device.items():
        if "inputs" not in v:
            rows.append(
                {
                    "device": name,
                    "inputs": None,
                    "why this threshold": v.get("skipped_reason", "not filtered"),
                }
            )
            continue
        th = v.get("threshold") or {}
        rows.append(
            {
                "device": name,
                "inputs": v["inputs"],
                "skipped": v["skipped"],
                "skip fraction": v["skip_fraction"],
                "agreement": v["agreement"],
                "feature": th.get("feature"),
                "threshold (tuned)": th.get("threshold"),
                "threshold (end)": v.get("threshold_end"),
                "probes": v.get("probes"),
                "bytes not uploaded": v.get("bytes_not_uploaded"),
                "device compute saved (ms)": v.get("compute_saved_ms"),
                "device energy saved (J)": v.get("energy_saved_j"),
                "filter ms / input": v.get("filter_ms_per_input"),
                "model ms / input": v.get("model_ms_per_input"),
                "why this threshold": v.get("reason") or th.get("reason"),
            }
        )
    return rows


def _warn_filter(ctx: RenderContext, filt: dict[str, Any]) -> None:
    devs = {k: v for k, v in (filt.get("per_device") or {}).items() if "inputs" in v}
    if not devs:
        return
    h = ctx.headline
    skipped = sum(int(v["skipped"]) for v in devs.values())
    inputs = sum(int(v["inputs"]) for v in devs.values())
    sent = sum(int(v.get("bytes_not_uploaded") or 0) for v in devs.values())
    h.fact(
        "redundancy filter",
        f"{skipped} of {inputs} device inputs skipped ({skipped / max(inputs, 1):.1%}) "
        f"at agreement target {filt.get('target')}",
    )
    h.tier("device ↔ edge", "bytes not uploaded (redundancy filter)", sent)
    aside = {k: v for k, v in devs.items() if v.get("stands_aside")}
    if aside:
        name, v = next(iter(aside.items()))
        ctx.warn(
            f"caching: the redundancy filter stands aside on {len(aside)} of {len(devs)} "
            f"devices, which run the model on every input (e.g. {name}: {v.get('reason')})"
        )
    costly = {k: v for k, v in devs.items() if float(v.get("compute_saved_ms") or 0.0) < 0}
    if costly:
        name, v = next(iter(costly.items()))
        ctx.warn(
            f"caching: the redundancy filter costs more device time than it saves on "
            f"{len(costly)} of {len(devs)} devices (e.g. {name}: filter "
            f"{v.get('filter_ms_per_input')} ms vs model {v.get('model_ms_per_input')} ms per "
            "input); the model is cheaper than the difference feature"
        )
    target = filt.get("target")
    low = [
        k for k, v in devs.items() if isinstance(target, float | int) and v["agreement"] < target
    ]
    if low:
        ctx.warn(
            f"caching: the filter's agreement with processing every input fell below the "
            f"target {target} on {', '.join(low)} (tuned on the profiling segment only)"
        )
    missed = sum(int(v.get("missed_alerts") or 0) for v in devs.values())
    if missed:
        alerts = sum(int(v.get("alerts") or 0) for v in devs.values())
        ctx.warn(
            f"caching: the redundancy filter hid {missed} of the {alerts} alerts the model "
            "raised on the filtered inputs (a skipped input reuses the last result); its "
            "agreement target counts every input alike, so rare alarms barely move it"
        )


def _server_rows(per_server: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for server, v in per_server.items():
        c = v.get("cache") or {}
        rows.append(
            {
                "edge server": server,
                "devices": v.get("devices"),
                "requests": v.get("requests"),
                "hit ratio": c.get("hit_ratio"),
                "exact hits": c.get("exact_hits", v.get("exact_hits")),
                "approximate hits": c.get("approx_hits", v.get("approx_hits")),
                "misses": c.get("misses"),
                "evictions": c.get("evictions"),
                "expirations": c.get("expirations"),
                "reuse opportunities": v.get("opportunities"),
                "harnessed": v.get("harnessed_fraction"),
                "reuse accuracy": v.get("reuse_accuracy"),
                "model (ms)": v.get("model_ms"),
                "lookup (ms, mean)": v.get("lookup_ms_mean"),
                "latency saved (ms / request)": v.get("latency_saved_ms_mean"),
                "in use": "no: stands aside" if v.get("stands_aside") else "yes",
            }
        )
    return rows


def _warn_result_cache(ctx: RenderContext, per_server: dict[str, Any]) -> None:
    h = ctx.headline
    for server, v in per_server.items():
        c = v.get("cache") or {}
        h.fact(
            f"result cache at {server}",
            str(v.get("reason"))  # as the terminal summary: the server runs without one
            if v.get("stands_aside")
            else f"hit ratio {c.get('hit_ratio', 0):.1%}, reused results "
            f"{v.get('reuse_accuracy', 0):.1%} correct",
        )
    aside = {k: v for k, v in per_server.items() if v.get("stands_aside")}
    if aside:
        server, v = next(iter(aside.items()))
        ctx.warn(
            f"caching: the result cache stands aside at {', '.join(aside)}, whose servers run "
            f"the model on every request ({server}: {v.get('reason')})"
        )
    slow = {
        k: v
        for k, v in per_server.items()
        if float(v.get("latency_saved_ms_mean") or 0) < 0 and not v.get("stands_aside")
    }
    if slow:
        server, v = next(iter(slow.items()))
        ctx.warn(
            f"caching: reusing a cached result is slower than recomputing it for this model at "
            f"{', '.join(slow)} (lookup {v.get('lookup_ms_mean')} ms vs model "
            f"{v.get('model_ms')} ms per request)"
        )


def _policy_rows(miss: dict[str, float]) -> list[dict[str, Any]]:
    opt = miss.get("opt")
    rows = []
    for name, m in sorted(miss.items(), key=lambda kv: kv[1]):
        rows.append(
            {
                "policy": name,
                "miss ratio": m,
                "above OPT (points)": None if opt is None else round(100 * (m - opt), 2),
                "× OPT's misses": None if not opt else round(m / opt, 3),
            }
        )
    return rows


def _placement(pl: dict[str, Any]) -> list[Markup]:
    parts = []
    cat = pl.get("catalogue") or {}
    if cat:  # the experiment's synthetic catalogue, beside its figures
        parts.append(
            Markup("<p>{}</p>").format(
                f"Catalogue (synthetic): {cat.get('items')} items of {cat.get('item_mb')} MB, "
                f"Zipf popularity exponent {cat.get('zipf_alpha')}, "
                f"{cat.get('requests_per_station')} requests per station (half to learn "
                f"popularity, half to evaluate), locality {cat.get('locality')} "
                "(settings.caching.placement)."
            )
        )
    stations = pl.get("stations") or {}
    neighbours = pl.get("neighbours") or {}
    if stations:
        recs = {
            n: {**s, "neighbours": ", ".join(neighbours.get(n) or []) or "—"}
            for n, s in stations.items()
        }
        parts.append(table(recs, index="base station", caption="Items placed per base station"))
    tier = pl.get("device_tier") or {}
    strategies = {
        "devices + cooperative greedy": tier.get("tiered_cooperative"),
        "cooperative greedy": pl.get("cooperative_greedy"),
        "single-BS popularity": pl.get("single_bs_popularity"),
    }
    recs2 = {
        k: {
            "device hit ratio": v.get("device_hit_ratio", 0.0),
            "station hit ratio": v.get("local_hit_ratio"),
            "neighbour hit ratio": v.get("neighbour_hit_ratio"),
            "from the cloud": v.get("cloud_ratio"),
            "mean latency (ms)": v.get("mean_latency_ms"),
            "backhaul (MiB)": round(v.get("backhaul_bytes", 0) / 2**20),
            "requests": v.get("requests"),
        }
        for k, v in strategies.items()
        if v
    }
    if recs2:
        parts.append(
            table(
                recs2,
                index="placement",
                caption="Delivery of the held-out requests: hit ratio per tier (a device's own "
                "cache, its station, a linked station, the cloud)",
            )
        )
    if tier.get("device_items"):
        parts.append(
            details(
                f"device tier: items cached on {tier.get('devices_with_cache')} devices "
                f"(their profile's cache_mb; fetch {tier.get('device_ms')} ms)",
                kv_table(tier["device_items"]),
            )
        )
    extra = {k: pl[k] for k in ("lp_bound", "greedy_gap_to_lp", "greedy_s") if k in pl}
    if extra:
        parts.append(
            kv_table(
                {
                    "LP bound (latency saved, upper bound)": extra.get("lp_bound"),
                    "greedy's gap to the LP bound": extra.get("greedy_gap_to_lp"),
                    "greedy time (s)": extra.get("greedy_s"),
                }
            )
        )
    return parts


@register_section("caching", title="Caching", order=65)
def render_caching(data: dict[str, Any], figures: list[Figure], ctx: RenderContext) -> Markup:
    parts: list[Markup] = []
    summary = data.get("summary") or {}
    overview = {"model p50 here (ms)": data.get("model_p50_ms_here"), **summary}
    parts.append(kv_table(overview))
    figs = {f.title: f for f in figures}

    filt = data.get("filter")
    if filt:
        _warn_filter(ctx, filt)
        parts.append(Markup("<h3>Redundancy filter on the devices</h3>"))
        stream = filt.get("stream") or {}
        if stream:  # what the filter's figures stand on (synthetic repetition, if any)
            parts.append(Markup("<p>{}</p>").format(stream_sentence(stream)))
        rows = _filter_rows(filt.get("per_device") or {})
        why = [{"device": r["device"], "why this threshold": r.pop("why this threshold")}
               for r in rows]  # fmt: skip
        if rows:
            parts.append(
                table(
                    rows,
                    caption=f"Filter per device (agreement target {filt.get('target')}, tuned "
                    f"on the first {filt.get('profile_fraction')} of each stream)",
                    row_class=lambda r: (
                        "bad"
                        if isinstance(r.get("device compute saved (ms)"), float | int)
                        and r["device compute saved (ms)"] < 0
                        else ""
                    ),
                )
            )
        if why:
            parts.append(table(why, caption="Why each device's threshold (tuned on its profiling "
                               "segment)"))  # fmt: skip
        for name, v in (filt.get("per_device") or {}).items():
            best = (v.get("threshold") or {}).get("best_per_feature")
            if best:
                parts.append(
                    details(
                        f"{name}: best threshold of every feature on the profiling segment",
                        table(best, index="feature", nested=True),
                    )
                )
        fig = figs.get("Inputs skipped per device")
        if fig is not None:
            parts.append(ctx.figure(fig))

    rc = data.get("result_cache")
    if rc:
        per_server = rc.get("per_server") or {}
        _warn_result_cache(ctx, per_server)
        parts.append(Markup("<h3>Result cache on the edge servers</h3>"))
        cfg = rc.get("config") or {}
        if cfg:  # what the figures stand on: a replayed, noised request stream
            parts.append(
                Markup("<p>{}</p>").format(
                    f"Request stream (synthetic): {cfg.get('requests')} requests per server, "
                    "each a held-out test input replayed with Gaussian noise of standard "
                    f"deviation {cfg.get('noise')} (settings.caching.result_cache)."
                )
            )
        if per_server:
            parts.append(
                table(
                    _server_rows(per_server),
                    caption="Exact + approximate result cache shared by each server's devices",
                    row_class=lambda r: (
                        "bad"
                        if isinstance(r.get("latency saved (ms / request)"), float | int)
                        and r["latency saved (ms / request)"] < 0
                        else ""
                    ),
                )
            )
        if rc.get("config"):
            parts.append(details("result cache configuration", kv_table(rc["config"])))

    pol = data.get("policies")
    if pol:
        parts.append(Markup("<h3>Replacement policies</h3>"))
        parts.append(
            table(
                _policy_rows(pol.get("miss_ratio") or {}),
                caption=f"Miss ratio on {pol.get('requests')} requests ({pol.get('trace')}), "
                f"capacity {pol.get('capacity')} entries; OPT = Belady's offline bound",
                row_class=lambda r: "muted" if r.get("policy") == "opt" else "",
            )
        )
        fig = figs.get("Miss ratio per replacement policy")
        if fig is not None:
            parts.append(ctx.figure(fig))

    pl = data.get("placement")
    if pl:
        parts.append(Markup("<h3>Content placement across base stations</h3>"))
        parts.extend(_placement(pl))
    parts.append(ctx.figures(ctx.unused(figures)))
    return Markup("").join(parts)
