"""The ``caching`` stage: what work the scenario's devices and base stations can skip.

1. Each device's stream (its samples in order; sensor recordings joined and
   cut into model-sized windows) goes through the redundancy filter, tuned on
   the first part of the stream against the trained model's outputs (ONNX
   Runtime); inputs skipped, bytes not uploaded, compute and energy saved.
2. Each edge server's devices share one result cache (exact + approximate)
   over noisy views of the held-out inputs: hit ratio per tier, opportunities
   harnessed, accuracy of reused results, latency saved.
3. The replacement policies on that request trace, against Belady's OPT.
4. Placement of items across the base stations under their ``cache_mb``:
   cooperative greedy vs single-BS popularity, and the LP bound when small;
   with devices whose profile has ``cache_mb`` > 0, the device tier too (each
   station's requests come from its devices; hit ratio per tier).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from edgeintel.caching import (
    Delivery,
    ResultCacheConfig,
    downsample_vector,
    evaluate_delivery,
    evaluate_tiered_delivery,
    filter_stream,
    miss_ratio,
    prepare,
    replay_reuse,
    shared_views,
    tiered_placement,
    zipf_demand,
)
from edgeintel.caching.filter import hidden_alerts
from edgeintel.caching.filter_cost import (
    aside_reason,
    cache_aside_reason,
    cache_pays,
    filter_cost_ms,
    filter_pays,
)
from edgeintel.caching.placement import CONTENT_PLACEMENTS
from edgeintel.data.datasets import Modality
from edgeintel.latency import measure_latency
from edgeintel.onnx_files import make_session, onnx_predict
from edgeintel.pipeline.core import RunContext, Stage, register_stage
from edgeintel.pipeline.sections import caching_section as _section  # noqa: F401  (registers the section)
from edgeintel.report import plots
from edgeintel.runtime.wiring import FilterThreshold
from edgeintel.tasks import TaskKind

__all__ = ["CachingStage", "filter_arguments", "filter_streams"]

_LP_MAX_VARIABLES = 20_000


def _r(x: float, n: int = 4) -> float:
    return round(float(x), n)


def _device_stream(x: np.ndarray, modality: Modality) -> np.ndarray:
    """Inputs a device sends in order: recordings (a time series's ``(N, C, L)``) as
    model-sized windows of one joined signal; anything else (frames, clips, tabular
    readings) one sample per input."""
    if modality is Modality.TIMESERIES and x.ndim == 3:  # one signal, windows of L every L/4
        length = x.shape[2]
        signal = np.concatenate(list(x), axis=1)
        hop = max(1, length // 4)
        starts = range(0, signal.shape[1] - length + 1, hop)
        return np.stack([signal[:, s : s + length] for s in starts]).astype(np.float32)
    return np.asarray(x, dtype=np.float32)


def filter_streams(
    ctx: RunContext, session: Any
) -> Iterator[tuple[Any, np.ndarray, list[np.ndarray] | None, list[Any] | None]]:
    """Each filtered device (the first ``caching.filter.max_devices``) with the inputs it
    sends in order, the filter's prepared form of them and the kind's prediction for each
    (labels, values, anomaly scores) from ``session``: what the filter is tuned and run on.
    A device with fewer than 4 inputs comes with ``None`` for the last two (not filtered)."""
    fs = ctx.scenario.settings.caching.filter
    ds = ctx.require_dataset()
    kind = ctx.task_kind()
    for d, device in enumerate(ctx.devices[: fs.max_devices]):
        if ds.modality is Modality.TIMESERIES and ds.x.ndim == 3:
            # recordings joined in time order and cut into model-sized windows
            xs = _device_stream(ds.x[np.sort(ctx.device_parts[d])], ds.modality)
        else:  # frames, clips, tabular readings: one sample per input, in the order
            xs = ctx.device_inputs(d)[0]  # (and the stream) the agent sends them
        if len(xs) < 4:
            yield device, xs, None, None
            continue
        outputs = kind.predict(onnx_predict(session, xs), xs).tolist()
        yield device, xs, [prepare(x) for x in xs], outputs


def filter_arguments(ctx: RunContext) -> dict[str, Any]:
    """``filter_stream``'s settings for this run: ``caching.filter`` and the task kind's
    rules (agreement; for a kind that raises alerts, its alert rule; its margin)."""
    fs = ctx.scenario.settings.caching.filter
    kind = ctx.task_kind()
    alerting = type(kind).urgent is not TaskKind.urgent  # a kind that raises alerts
    return {
        "target": fs.target,
        "profile_fraction": fs.profile_fraction,
        "features": fs.features,
        "adapt": fs.adapt,
        "probe_every": fs.probe_every,
        "raise_after": fs.raise_after,
        "same": kind.same,
        **({"urgent": kind.urgent} if alerting else {}),
        "alert_margin": fs.alert_margin,
        "margin": kind.margin,
        "sensitivity_quantile": fs.sensitivity_quantile,
        "sensitivity_factor": fs.sensitivity_factor,
    }


@register_stage
class CachingStage(Stage):
    """Redundancy filter per device, shared result cache per edge server, policies, placement."""

    name = "caching"
    order = 65
    title = "Caching"

    def enabled(self, ctx: RunContext) -> bool:
        return ctx.scenario.settings.caching.enabled

    def run(self, ctx: RunContext) -> None:
        if ctx.artifact is None:
            raise RuntimeError("the caching stage needs the exported model (export stage)")
        settings = ctx.scenario.settings.caching
        session = make_session(ctx.artifact.path)
        x_te, _ = ctx.test_arrays()
        model_ms = measure_latency(session, x_te[:1], runs=50, warmup=5).p50_ms
        section: dict[str, Any] = {"model_p50_ms_here": _r(model_ms)}
        with ctx.task("Caching", total=4) as advance:
            if settings.filter.enabled:
                section["filter"] = self._filter(ctx, session, model_ms)
            advance()
            trace = None
            if settings.result_cache.enabled:
                section["result_cache"], trace = self._result_cache(ctx, session, model_ms)
            advance()
            if trace is not None:
                section["policies"] = self._policies(ctx, trace)
            advance()
            if settings.placement.enabled and ctx.scenario.edge_servers:
                section["placement"] = self._placement(ctx)
            advance()
        section["summary"] = _summary(section)
        ctx.results["caching"] = section
        self._figures(ctx, section)

    # ----------------------------------------------------------------- filter

    def _filter(self, ctx: RunContext, session: Any, model_ms: float) -> dict[str, Any]:
        fs = ctx.scenario.settings.caching.filter
        kind = ctx.task_kind()
        args = filter_arguments(ctx)
        alerting = "urgent" in args
        per_device: dict[str, Any] = {}
        for device, xs, prepared, outputs in filter_streams(ctx, session):
            if prepared is None or outputs is None:
                per_device[device.name] = {"skipped_reason": f"only {len(xs)} inputs"}
                continue
            report, run = filter_stream(prepared, outputs, **args)
            refs = outputs[len(outputs) - run.inputs :]
            filter_ms = filter_cost_ms(xs, report.feature)
            prof = device.profile
            dev_model_ms = model_ms / prof.compute_speed
            dev_filter_ms = filter_ms / prof.compute_speed
            input_bytes = int(xs[0].astype(np.float32).nbytes)
            # decided on the profiling segment: does the filter save more than it costs?
            pays = filter_pays(report.skip_fraction, filter_ms, model_ms)
            compute_saved_ms = run.skipped * dev_model_ms - run.inputs * dev_filter_ms
            tuned = report.to_json()
            # the runtime's agents start from this threshold (as results.json records it)
            ctx.filter_thresholds[device.name] = FilterThreshold(
                tuned["feature"], tuned["threshold"], tuned.get("sensitivity"), not pays
            )
            used = {
                "skipped": run.skipped,
                "skip_fraction": _r(run.skip_fraction),
                "compute_saved_ms": _r(compute_saved_ms, 3),
            }
            skipped = run.skipped if pays else 0
            saved_ms = compute_saved_ms if pays else 0.0
            saved_bytes = skipped * input_bytes
            tx_s = saved_bytes * 8 / (device.link.bandwidth_mbps * 1e6)
            row: dict[str, Any] = {
                "inputs": run.inputs,
                "skipped": skipped,
                "skip_fraction": _r(skipped / max(1, run.inputs)),
                "probes": run.probes if pays else 0,
                "agreement": _r(run.agreement or 0.0) if pays else 1.0,
                "threshold": tuned,
                "threshold_end": _r(run.threshold_end, 6),
                "bytes_not_uploaded": saved_bytes,
                "compute_saved_ms": _r(saved_ms, 3),
                "energy_saved_j": _r(
                    prof.power_compute_w * saved_ms / 1e3 + prof.power_tx_w * tx_s, 6
                ),
                "filter_ms_per_input": _r(dev_filter_ms),
                "model_ms_per_input": _r(dev_model_ms),
            }
            if not pays:  # what it would have done, for the report
                row.update(
                    stands_aside=True,
                    reason=aside_reason(report.skip_fraction, dev_filter_ms, dev_model_ms),
                    if_used=used,
                )
            per_device[device.name] = row
            if alerting:
                alerts = [kind.urgent(r) for r in refs]
                missed = int(hidden_alerts(run.outputs, refs, kind.urgent))
                row.update(alerts=int(sum(alerts)), missed_alerts=missed if pays else 0)
                if not pays:
                    used["missed_alerts"] = missed
        st = ctx.scenario.data.stream
        return {
            "stream": {"frames_per_sample": st.frames_per_sample, "noise": st.noise},
            "target": fs.target,
            "profile_fraction": fs.profile_fraction,
            "adapt": fs.adapt,
            "per_device": per_device,
        }

    # ----------------------------------------------------------------- result cache

    def _result_cache(
        self, ctx: RunContext, session: Any, model_ms: float
    ) -> tuple[dict[str, Any], np.ndarray]:
        rs = ctx.scenario.settings.caching.result_cache
        x_te, _ = ctx.test_arrays()
        kind = ctx.task_kind()
        scenes = _device_stream(x_te, ctx.require_dataset().modality)
        groups: dict[str, int] = {}
        for dev in ctx.devices:
            groups[dev.attach] = groups.get(dev.attach, 0) + 1
        per_server: dict[str, Any] = {}
        first_trace = None
        for i, (server, n_dev) in enumerate(sorted(groups.items())):
            st = shared_views(scenes, rs.requests, n_dev, noise=rs.noise, seed=ctx.seed * 1000 + i)
            truth = kind.predict(onnx_predict(session, st.inputs), st.inputs).tolist()
            dim = downsample_vector(st.inputs[0]).size
            cfg = ResultCacheConfig.from_settings(rs, dim)
            rep = replay_reuse(st, lambda x: None, cfg, model_ms, truth=truth, same=kind.same)
            row = {"devices": n_dev, **rep.to_json()}
            lookup_ms, served_ms = float(row["lookup_ms_mean"]), float(row["model_ms"])
            if not cache_pays(lookup_ms, served_ms):  # the runtime's server runs without it
                row.update(stands_aside=True, reason=cache_aside_reason(lookup_ms, served_ms))
                ctx.result_cache_aside.add(server)
            per_server[server] = row
            if first_trace is None:
                first_trace = st.scene
        assert first_trace is not None
        return {"per_server": per_server, "config": rs.model_dump()}, first_trace

    # ----------------------------------------------------------------- policies

    def _policies(self, ctx: RunContext, trace: np.ndarray) -> dict[str, Any]:
        names = ctx.scenario.settings.caching.policies
        cap = max(1, len(np.unique(trace)) // 10)
        ratios = {n: _r(miss_ratio(n, trace, cap)) for n in [*names, "opt"]}
        return {
            "trace": "ids of the test inputs requested at the first edge server",
            "capacity": cap,
            "requests": len(trace),
            "miss_ratio": ratios,
        }

    # ----------------------------------------------------------------- placement

    def _placement(self, ctx: RunContext) -> dict[str, Any]:
        ps = ctx.scenario.settings.caching.placement
        sc = ctx.scenario
        names = [e.name for e in sc.edge_servers]
        index = {n: i for i, n in enumerate(names)}
        nb: list[list[int]] = [[] for _ in names]
        for link in sc.links:
            a, b = link.between
            if a in index and b in index:
                nb[index[a]].append(index[b])
                nb[index[b]].append(index[a])
        cap = [int(e.cache_mb // ps.item_mb) for e in sc.edge_servers]
        _, traces = zipf_demand(
            len(names), ps.items, ps.zipf_alpha, 2 * ps.requests, ps.locality, seed=ctx.seed
        )
        half = ps.requests
        history = np.stack([np.bincount(t[:half], minlength=ps.items) for t in traces]).astype(
            float
        )
        future = [t[half:] for t in traces]
        dl = Delivery(ps.local_ms, ps.neighbour_ms, ps.cloud_ms, ps.device_ms)
        coop = CONTENT_PLACEMENTS.get("greedy")(history, cap, nb, dl)
        single = CONTENT_PLACEMENTS.get("popularity")(history, cap, nb, dl)
        item_bytes = int(ps.item_mb * 2**20)
        out: dict[str, Any] = {
            # the experiment is synthetic: the report states its catalogue beside the figures
            "catalogue": {
                "items": ps.items,
                "item_mb": ps.item_mb,
                "zipf_alpha": ps.zipf_alpha,
                "requests_per_station": ps.requests,
                "locality": ps.locality,
            },
            "stations": {
                n: {"kind": str(e.kind), "cache_mb": e.cache_mb, "items": len(coop.cached[i])}
                for i, (n, e) in enumerate(zip(names, sc.edge_servers, strict=True))
            },
            "neighbours": {names[i]: [names[j] for j in nb[i]] for i in range(len(names))},
            "cooperative_greedy": evaluate_delivery(coop, future, item_bytes, nb, dl).to_json(),
            "single_bs_popularity": evaluate_delivery(
                single, future, item_bytes, None, dl
            ).to_json(),
            "greedy_s": _r(coop.seconds, 4),
        }
        tier = self._device_tier(ctx, traces, half, cap, nb, dl, item_bytes)
        if tier is not None:
            out["device_tier"] = tier
        n_vars = ps.items * (len(names) + sum(1 + len(n) for n in nb))
        if n_vars <= _LP_MAX_VARIABLES:
            lp = CONTENT_PLACEMENTS.get("lp")(history, cap, nb, dl)
            out["lp_bound"] = _r(lp.value, 1)
            out["greedy_gap_to_lp"] = _r(1 - coop.value / lp.value, 5) if lp.value else 0.0
        return out

    def _device_tier(
        self,
        ctx: RunContext,
        traces: list[np.ndarray],
        half: int,
        cap: list[int],
        nb: list[list[int]],
        dl: Delivery,
        item_bytes: int,
    ) -> dict[str, Any] | None:
        """Devices' own caches (``profile.cache_mb``) in front of the stations' placement.

        Each station's requests are split among its attached devices (uniformly,
        seeded); a station with no device keeps its requests on a cacheless
        stand-in, so every tier sees the very requests the station-only
        placements are evaluated on. Devices keep their own most requested
        items, stations the greedy placement of the rest (``tiered_placement``).
        """
        ps = ctx.scenario.settings.caching.placement
        index = {e.name: i for i, e in enumerate(ctx.scenario.edge_servers)}
        attached: list[list[Any]] = [[] for _ in index]
        for dev in ctx.devices:
            if dev.attach in index:
                attached[index[dev.attach]].append(dev)
        slots = [int(d.profile.cache_mb // ps.item_mb) for ds in attached for d in ds]
        if not any(slots):
            return None
        rng = np.random.default_rng(ctx.seed + 65)
        names, caps, station, hist, future = [], [], [], [], []
        for s, (trace, devs) in enumerate(zip(traces, attached, strict=True)):
            who = rng.integers(max(1, len(devs)), size=len(trace))
            for j in range(max(1, len(devs))):
                mine = who == j
                names.append(devs[j].name if devs else f"({list(index)[s]}: no devices)")
                caps.append(int(devs[j].profile.cache_mb // ps.item_mb) if devs else 0)
                station.append(s)
                hist.append(np.bincount(trace[:half][mine[:half]], minlength=ps.items))
                future.append(trace[half:][mine[half:]])
        tiered = tiered_placement(np.stack(hist).astype(float), caps, station, cap, nb, dl)
        own, rep = evaluate_tiered_delivery(tiered, future, station, item_bytes, nb, dl)
        n = max(1, rep.requests)
        return {
            "devices_with_cache": sum(c > 0 for c in caps),
            "device_items": {
                k: len(c) for k, c, m in zip(names, tiered.devices.cached, caps, strict=True) if m
            },
            "device_ms": dl.device_ms,
            "tiered_cooperative": {
                "device_hit_ratio": _r(own / n),
                **rep.to_json(),
            },
        }

    # ----------------------------------------------------------------- figures

    def _figures(self, ctx: RunContext, section: dict[str, Any]) -> None:
        devs = {
            k: v
            for k, v in section.get("filter", {}).get("per_device", {}).items()
            if "inputs" in v
        }
        if devs:
            ctx.add_figure(
                "caching",
                "Inputs skipped per device",
                plots.bar_chart(
                    list(devs),
                    [v["skip_fraction"] for v in devs.values()],
                    ylabel="fraction skipped",
                ),
                "Redundancy filter on each device's stream after tuning on its first part "
                f"(agreement target {section['filter']['target']:g}).",
            )
        pol = section.get("policies")
        if pol:
            ctx.add_figure(
                "caching",
                "Miss ratio per replacement policy",
                plots.bar_chart(
                    list(pol["miss_ratio"]), list(pol["miss_ratio"].values()), ylabel="miss ratio"
                ),
                "Request trace of the first edge server (which test input each request "
                f"shows), capacity {pol['capacity']} entries; opt = Belady's offline bound.",
            )


def _summary(section: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    devs = [v for v in section.get("filter", {}).get("per_device", {}).values() if "inputs" in v]
    if devs:
        # pooled over devices (skipped / inputs), the one skip rate the report's headline,
        # its section and results' payoff quote too
        skipped = sum(int(v["skipped"]) for v in devs)
        inputs = sum(int(v["inputs"]) for v in devs)
        agree = sum(float(v["agreement"]) * int(v["inputs"]) for v in devs) / max(1, inputs)
        out["inputs skipped (all devices)"] = (
            f"{skipped} of {inputs} ({skipped / max(1, inputs):.1%}) at {agree:.1%} agreement"
        )
        out["bytes not uploaded"] = f"{sum(v['bytes_not_uploaded'] for v in devs) / 1024:.1f} KiB"
        out["energy saved"] = f"{sum(v['energy_saved_j'] for v in devs):.4g} J"
        out["threshold chosen (first device)"] = devs[0]["threshold"]["reason"]
        aside = [v for v in devs if v.get("stands_aside")]
        if aside:
            out["filter stands aside"] = f"on {len(aside)} of {len(devs)} devices: " + str(
                aside[0]["reason"]
            ).removeprefix("stands aside: ")
    for server, v in section.get("result_cache", {}).get("per_server", {}).items():
        c = v["cache"]
        out[f"result cache at {server}"] = (
            str(v["reason"])
            if v.get("stands_aside")
            else f"hit ratio {c['hit_ratio']:.1%} (exact {c['exact_hits']}, approx "
            f"{c['approx_hits']}), {v['harnessed_fraction']:.1%} of reuse opportunities at "
            f"{v['reuse_accuracy']:.1%} accuracy"
        )
    pl = section.get("placement")
    if pl:
        c, s = pl["cooperative_greedy"], pl["single_bs_popularity"]
        out["placement"] = (
            f"cooperative {c['mean_latency_ms']:.1f} ms, {c['backhaul_bytes'] / 2**20:.0f} MiB "
            f"backhaul vs single-BS {s['mean_latency_ms']:.1f} ms, "
            f"{s['backhaul_bytes'] / 2**20:.0f} MiB"
        )
        t = (pl.get("device_tier") or {}).get("tiered_cooperative")
        if t:
            out["hit ratio per tier (devices + cooperative)"] = (
                f"device {t['device_hit_ratio']:.1%}, station {t['local_hit_ratio']:.1%}, "
                f"neighbour {t['neighbour_hit_ratio']:.1%}, cloud {t['cloud_ratio']:.1%}; "
                f"{t['mean_latency_ms']:.1f} ms, {t['backhaul_bytes'] / 2**20:.0f} MiB backhaul"
            )
    return out
