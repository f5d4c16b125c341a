"""Report section of the device runtimes: the artifact each profile receives in its runtime,
and the parity matrix of the trained model (accuracy, top-1 agreement with fp32 PyTorch,
logit error, first diverging layer, size, batch-1 latency, peak memory per runtime and
precision, on the whole test split)."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from edgeintel.report.figures import Figure
from edgeintel.report.sections import RenderContext, kv_table, register_section, table

__all__ = ["parity_rows", "render_runtimes"]


def parity_rows(parity: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat table row per (runtime, precision) of a parity record (``ParityReport``)."""
    rows = []
    for r in parity.get("rows") or []:
        m = r.get("measurement") or {}
        lat = m.get("latency") or {}
        div = r.get("divergence") or {}
        peak = m.get("peak_memory_bytes")
        rows.append(
            {
                "runtime": r.get("runtime"),
                "precision": r.get("precision"),
                "accuracy": r.get("accuracy"),
                "agreement": r.get("agreement"),
                "goal": r.get("goal"),
                "met": r.get("met"),
                "max logit error": r.get("max_logit_error"),
                "KiB": None if m.get("file_bytes") is None else round(m["file_bytes"] / 1024, 1),
                "p50 ms": lat.get("p50_ms"),
                "p95 ms": lat.get("p95_ms"),
                "peak MiB": None if peak is None else round(peak / 2**20, 1),
                "diverges at": f"{div['tensor']} ({div['op_type']})" if div else None,
                "error": r.get("error"),
            }
        )
    return rows


@register_section("runtimes", title="Device runtimes and parity", order=57)
def render_runtimes(data: dict[str, Any], figures: list[Figure], ctx: RenderContext) -> Markup:
    parts: list[Markup] = []
    profiles = data.get("profiles") or {}
    for name, p in profiles.items():
        ctx.headline.profile(name, "runtime", f"{p.get('runtime')} ({p.get('format')})")
    if profiles:
        parts.append(table(profiles, index="device profile", caption="Artifact per profile"))
    for runtime, failed in (data.get("export_failures") or {}).items():
        parts.append(kv_table(failed, caption=f"Candidates {runtime} could not export"))
    parity = data.get("parity")
    if parity:
        rows = parity_rows(parity)
        for r in rows:
            if r["error"] is None and not r["met"]:
                ctx.warn(
                    f"{r['runtime']} {r['precision']} agrees with the fp32 model on "
                    f"{r['agreement']:.2%} of the test set (goal {r['goal']:.1%})"
                    + (f"; first diverging layer {r['diverges at']}" if r["diverges at"] else "")
                )
        caption = (
            f"Parity on {parity.get('samples')} test samples against {parity.get('reference')} "
            f"(accuracy {parity.get('reference_accuracy', float('nan')):.4f}); latency at "
            "batch 1 on this CPU through each runtime's own API"
        )
        parts.append(
            table(rows, caption=caption, row_class=lambda r: "" if r.get("met") else "bad")
        )
    elif data.get("parity_skipped"):
        parts.append(kv_table({"parity matrix": data["parity_skipped"]}))
    parts.append(ctx.figures(figures))
    return Markup("").join(parts)
