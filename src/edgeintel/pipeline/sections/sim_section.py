"""Report renderer of the ``simulation`` section (``edgeintel simulate``): the summary figures,
latency per placement, the initial plan and the federated rounds."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from edgeintel.report.figures import Figure
from edgeintel.report.sections import RenderContext, kv_table, register_section, table

__all__ = ["render_simulation"]


def _num(v: Any) -> Any:
    """Counts as integers (``72132``, not ``7.213e+04``), other numbers to 4 significant."""
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return int(v)
    return float(f"{v:.4g}") if isinstance(v, float) else v


def _ms(v: Any) -> str:
    return "-" if v is None else f"{float(v) * 1e3:.4g}"


@register_section("simulation", title="Fleet simulation", order=95)
def render_simulation(data: dict[str, Any], figures: list[Figure], ctx: RenderContext) -> Markup:
    s = data.get("summary", {})
    h = ctx.headline
    h.fact("simulated tasks", f"{int(s.get('tasks', 0)):,}")
    h.fact(
        "latency p50 / p95 (ms)", f"{_ms(s.get('latency_p50_s'))} / {_ms(s.get('latency_p95_s'))}"
    )
    h.fact(
        "engine",
        f"{data.get('engine')} ({s.get('events', 0):,.0f} events, {s.get('cpu_s', 0):.3g} s CPU)",
    )
    if s.get("dropped_queue") or s.get("dropped_outage"):
        ctx.warn(
            f"{int(s.get('dropped_queue') or 0)} tasks dropped at full server queues, "
            f"{int(s.get('dropped_outage') or 0)} at backhaul outages"
        )
    rows = []
    slots = ("", "_local", "_edge", "_cloud", *(("_d2d",) if s.get("completed_d2d") else ()))
    for slot in slots:
        rows.append(
            {
                "placement": slot.strip("_") or "all",
                "completed": int(s.get(f"completed{slot}") or 0),
                "p50 (ms)": _ms(s.get(f"latency_p50_s{slot}")),
                "p95 (ms)": _ms(s.get(f"latency_p95_s{slot}")),
                "p99 (ms)": _ms(s.get(f"latency_p99_s{slot}")),
            }
        )
    counts = {
        k: _num(s.get(k))
        for k in (
            "devices",
            "duration_s",
            "tasks",
            "skipped",
            "cache_hits",
            "cache_hit_ratio",
            "alerts",
            "alerts_completed",
            "alerts_dropped",
            "alert_latency_p95_s",
            "completed_d2d",
            "bytes_d2d",
            "dropped_battery",
            "dropped_queue",
            "dropped_outage",
            "decisions",
            "plan_switches",
            "handovers",
            "energy_j",
            "bytes_up",
            "bytes_down",
            "fl_rounds",
            "fl_stragglers",
            "fl_dropouts",
            "events",
            "cpu_s",
        )
        if k in s
    }
    plan = data.get("initial_plan", {})
    why = plan.get("why", {})
    if plan.get("all_local"):
        first = next(iter(why.values()), "")
        ctx.warn(f"the initial plan keeps every device group local ({first})")
    fleet = data.get("fleet", {})
    groups = plan.get("groups", {})
    plan_rows = [
        {
            "device group": g.removeprefix("group:"),
            "devices simulated": fleet.get(g.removeprefix("group:"), "-"),
            "plan": label,
            "why": why.get(g.removeprefix("group:"), "-"),
        }
        for g, label in groups.items()
    ]
    work = data.get("workload", {})
    work_rows = [
        {"figure": k, "value": _num(v.get("value")), "from": v.get("source", "-")}
        for k, v in work.items()
    ]
    parts = [table(rows), kv_table(counts)]
    if work_rows:
        parts.append(table(work_rows))
    parts.append(table(plan_rows) if plan_rows else kv_table({"initial plan": groups}))
    if data.get("rounds"):
        parts.append(table(data["rounds"]))
    parts.append(ctx.figures(figures))
    return Markup("").join(parts)
