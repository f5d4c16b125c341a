"""Report sections of the inference side: the exported model, its evaluation (accuracy,
confusion, latency distribution per device profile) and the per-profile compression choice.

The same ``compression`` renderer draws the run report's section and the page
that ``edgeintel compress`` writes.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from edgeintel.report.figures import Figure
from edgeintel.report.sections import (
    RenderContext,
    check_accuracy,
    details,
    kv_table,
    register_section,
    table,
)

__all__ = ["int8_slower_than_fp32", "render_compression", "render_evaluation", "render_model"]


@register_section("model", title="Model", order=40)
def render_model(data: dict[str, Any], figures: list[Figure], ctx: RenderContext) -> Markup:
    onnx = data.get("onnx") or {}
    kib = (onnx.get("bytes") or 0) / 1024
    ctx.headline.fact(
        "model",
        f"{data.get('family')} (width {data.get('width')}), {data.get('params', 0):,} "
        f"parameters, {kib:.1f} KiB ONNX, trained {data.get('trained_by')}",
    )
    info = {k: v for k, v in data.items() if k != "onnx"}
    return Markup("").join(
        [kv_table(info), kv_table(onnx, caption="ONNX artifact"), ctx.figures(figures)]
    )


@register_section("evaluation", title="Evaluation of the exported model", order=50)
def render_evaluation(data: dict[str, Any], figures: list[Figure], ctx: RenderContext) -> Markup:
    h = ctx.headline
    by = (ctx.results.get("model") or {}).get("trained_by", "")
    n_test = data.get("test_samples")
    metric = str(data.get("metric") or "accuracy")  # the task kind's headline metric
    value = data.get(f"{metric}_onnx")
    if metric == "accuracy":
        h.accuracy(
            f"exported ONNX model ({by})", value, note="what devices deploy, before compression"
        )
        check_accuracy(
            ctx, "exported model", [value], n_test=n_test if isinstance(n_test, int) else None
        )
    elif isinstance(value, float | int):
        h.fact(f"exported ONNX model ({by}), test {metric}", f"{value:.4g}")
    lat = data.get("latency_ms") or {}
    p50, p95 = lat.get("p50_ms"), lat.get("p95_ms")
    if lat.get("stable") is False:
        ctx.warn(
            f"timing noise: latency windows did not agree within 15 % after {lat.get('windows')} "
            "windows (the machine is busy); latencies are rough"
        )
    elif p50 and p95 and p95 > 2 * p50:
        ctx.warn(f"timing noise: p95 latency is {p95 / p50:.1f}× the median on this machine")
    machine = ctx.results.get("machine") or {}
    load, cpus = machine.get("load_1min"), machine.get("cpus")
    if isinstance(load, float | int) and isinstance(cpus, int) and load > cpus:
        ctx.warn(
            f"timing noise: the machine was busy (1-min load {load:g} on {cpus} CPUs) when "
            "the run started; latencies may be inflated"
        )
    per_profile = data.get("per_profile") or {}
    compressed = "compression" in ctx.results
    for name, p in per_profile.items():
        if not compressed:
            h.profile(name, "receives", "model.onnx (fp32, uncompressed)")
        h.profile(name, "fp32 p50 on device (ms, estimated)", p.get("p50_ms"))
        h.profile(name, "energy per fp32 inference (mJ)", p.get("energy_mj"))
    summary = {
        k: v
        for k, v in data.items()
        if k not in ("latency_ms", "per_profile", "latency_samples_ms", "confusion_matrix",
                     "per_device", "metrics_onnx", "options")
    }  # fmt: skip
    what = "Accuracy" if metric == "accuracy" else f"The {data.get('task')} task's figures"
    parts = [kv_table(summary, caption=f"{what} on the held-out test set")]
    if data.get("metrics_onnx"):
        parts.append(kv_table(data["metrics_onnx"], caption="Every metric of the ONNX model"))
    parts.append(kv_table(lat, caption="Latency on this machine (ms, batch 1, measured)"))
    if per_profile:
        parts.append(
            table(
                per_profile,
                index="device profile",
                caption="Latency and energy per device profile (estimated by speed scaling)",
            )
        )
    parts.append(ctx.figures(figures))
    per_device = data.get("per_device") or []
    if per_device:
        parts.append(table(per_device, caption="Expected accuracy per device"))
    samples = data.get("latency_samples_ms")
    if samples:
        parts.append(
            details(
                f"{len(samples)} raw latency samples on this machine (ms)",
                Markup("<div class='list'>")
                + Markup(", ".join(f"{v:.4g}" for v in samples))
                + Markup("</div>"),
            )
        )
    return Markup("").join(parts)


def int8_slower_than_fp32(candidates: list[dict[str, Any]]) -> list[tuple[str, float, float]]:
    """(label, int8 p50 ms, fp32 p50 ms) of int8 candidates slower than the fp32 model here."""
    base = next((c for c in candidates if not (c.get("recipe") or {}).get("steps")), None)
    if base is None:
        return []
    fp32 = base["measurement"]["latency"]["p50_ms"]
    out = []
    for c in candidates:
        if "int8" in str(c.get("label")) and c is not base:
            p50 = c["measurement"]["latency"]["p50_ms"]
            if p50 > fp32:
                out.append((str(c["label"]), p50, fp32))
    return out


def _why(verdict: str, budget: dict[str, Any], metric: str = "accuracy") -> str:
    """The chosen verdict plus the budget it was judged against, in words."""
    why = verdict.split(":", 1)[1].strip() if ":" in verdict else verdict
    terms = []
    if budget.get("max_latency_ms") is not None:
        terms.append(f"≤ {budget['max_latency_ms']:g} ms")
    if budget.get("max_bytes") is not None:
        terms.append(f"≤ {budget['max_bytes'] / 1024:g} KiB")
    if budget.get("min_accuracy") is not None:
        terms.append(f"accuracy ≥ {budget['min_accuracy']:g}")
    if budget.get("max_metric_drop") is not None:
        terms.append(f"{metric} drop ≤ {budget['max_metric_drop']:g}")
    if budget.get("max_peak_memory_bytes") is not None:
        terms.append(f"peak memory ≤ {budget['max_peak_memory_bytes'] / 2**20:g} MiB")
    return f"{why} (budget: {', '.join(terms)})" if terms else why


@register_section("compression", title="Compression per device profile", order=55)
def render_compression(data: dict[str, Any], figures: list[Figure], ctx: RenderContext) -> Markup:
    h = ctx.headline
    per_profile = data.get("per_profile") or {}
    metric = str(data.get("metric") or "accuracy")  # the task kind's headline metric
    parts: list[Markup] = []
    overview = {}
    for name, p in per_profile.items():
        rows = p.get("table") or []
        chosen = next((r for r in rows if r.get("chosen")), None)
        kib = (p.get("onnx_bytes") or 0) / 1024
        h.profile(name, "receives", f"{p.get('chosen')} ({kib:.1f} KiB)")
        why = _why(str(chosen["verdict"]), p.get("budget") or {}, metric) if chosen else ""
        h.profile(name, "why", why)
        h.profile(name, metric, p.get(metric))
        h.profile(name, "p50 on device (ms, estimated)", p.get("latency_ms_device"))
        budget = {k: v for k, v in (p.get("budget") or {}).items() if v is not None}
        overview[name] = {
            "chosen": p.get("chosen"),
            metric: p.get(metric),
            "latency on device (ms)": p.get("latency_ms_device"),
            "ONNX KiB": round(kib, 1),
            "budget": budget,
            "Pareto front": p.get("front"),
            **{
                f"{k.replace('_', '-')} data": v
                for k, v in (p.get("data_roles") or {}).items()
                if v != "none"
            },
        }
    base = (data.get("baseline") or {}).get("accuracy")
    for name, p in per_profile.items():
        if metric != "accuracy":
            break  # the pooled-data warning is about a classifier's accuracy
        acc = p.get("accuracy")
        tuned = (p.get("data_roles") or {}).get("fine_tuning", "")
        if str(tuned).startswith("device shards"):
            continue  # federated fine-tuning rounds may legitimately improve on the model
        if isinstance(base, float | int) and isinstance(acc, float | int) and acc > base + 0.05:
            ctx.warn(
                f"the artifact for {name} ({p.get('chosen')}, accuracy {acc:.3f}) beats the model "
                f"it compresses ({base:.3f}): its recipe fine-tunes on the pooled training data, "
                "which the edge-trained model never saw in one place"
            )
    cands = data.get("candidates") or []
    slow = int8_slower_than_fp32(cands)
    if slow:
        isa = (ctx.results.get("machine") or {}).get("isa")
        vnni = isa is not None and ("avx512_vnni" in isa or "avx_vnni" in isa)
        label, p50, fp32 = slow[0]
        more = f" (and {len(slow) - 1} more int8 candidates)" if len(slow) > 1 else ""
        ctx.warn(
            f"int8 is slower than fp32 on this CPU: {label} p50 {p50:.3g} ms vs fp32 "
            f"{fp32:.3g} ms{more}; "
            + (
                "the CPU has VNNI, so the model is too small for int8 kernels to pay off"
                if vnni
                else "the CPU lacks AVX-512 VNNI / AVX-VNNI int8 instructions"
            )
        )
    info = {
        k: v
        for k, v in data.items()
        if k not in ("per_profile", "candidates", "summary") and not isinstance(v, list)
    }
    if info:
        parts.append(kv_table(info))
    if overview:
        parts.append(table(overview, index="device profile", caption="Chosen artifact per profile"))
    figs = {f.title: f for f in figures}
    for name, p in per_profile.items():
        parts.append(Markup(f"<h3>{Markup.escape(name)}</h3>"))
        fig = figs.get(f"Pareto front for {name}")
        if fig is not None:
            parts.append(ctx.figure(fig))
        rows = p.get("table") or []
        if rows:
            parts.append(
                table(
                    rows,
                    caption=f"Every candidate judged for {name}",
                    row_class=lambda r: (
                        "chosen"
                        if r.get("chosen")
                        else ("good" if str(r.get("verdict", "")).startswith("meets") else "muted")
                    ),
                    collapse_after=30,
                )
            )
    if cands:
        flat = []
        for c in cands:
            m = c.get("measurement") or {}
            lat = m.get("latency") or {}
            flat.append(
                {
                    "candidate": c.get("label"),
                    metric: m.get(metric),
                    "p50 here (ms)": lat.get("p50_ms"),
                    "p95 here (ms)": lat.get("p95_ms"),
                    "ONNX bytes": m.get("onnx_bytes"),
                    "MACs": m.get("macs"),
                    "peak memory (B)": m.get("peak_memory_bytes"),
                    **{k: v for k, v in (c.get("ratios") or {}).items()},
                    "warnings": "; ".join(c.get("warnings") or []) or None,
                }
            )
        parts.append(table(flat, caption="Candidates as measured on this machine"))
    parts.append(ctx.figures(ctx.unused(figures)))
    return Markup("").join(parts)
