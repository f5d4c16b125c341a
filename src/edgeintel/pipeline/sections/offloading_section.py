"""Report renderer of the ``offloading`` section: the plan per device against the baselines.

Headline: where each device profile's inference runs (and its predicted
latency / energy per request), the plan against all-local / all-edge /
all-cloud; warnings when devices miss their deadline, when the plan is slower
than running everything locally, or when an executed split disagrees with the
unsplit model.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from markupsafe import Markup

from edgeintel.report.figures import Figure
from edgeintel.report.sections import RenderContext, kv_table, register_section, table

__all__ = ["device_group", "render_offloading"]

#: An executed split whose output differs from the unsplit model by more than this is flagged.
SPLIT_DIFF_TOLERANCE = 1e-3

_PLAN_COLUMNS = {
    "device": "device",
    "decision": "decision",
    "target": "runs on",
    "split": "layers on device",
    "latency_ms": "latency (ms)",
    "energy_mj": "device energy (mJ)",
    "queue_ms": "queueing (ms)",
    "meets_deadline": "meets deadline",
    "local_ms": "all-local (ms)",
    "edge_ms": "all-edge (ms)",
    "cloud_ms": "all-cloud (ms)",
    "local_mj": "all-local (mJ)",
    "edge_mj": "all-edge (mJ)",
    "cloud_mj": "all-cloud (mJ)",
}


def device_group(device: str, groups: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The scenario device group a device instance (``phone-3``, or ``phone``) belongs to."""
    for g in groups:
        name = str(g.get("name"))
        if device == name or device.rsplit("-", 1)[0] == name:
            return g
    return None


def _mean(rows: list[dict[str, Any]], key: str) -> float | None:
    vals = [float(r[key]) for r in rows if isinstance(r.get(key), int | float)]
    return sum(vals) / len(vals) if vals else None


@register_section("offloading", title="Offloading (placement and DNN partitioning)", order=52)
def render_offloading(data: dict[str, Any], figures: list[Figure], ctx: RenderContext) -> Markup:
    h = ctx.headline
    rows: list[dict[str, Any]] = list(data.get("devices") or [])
    baselines: dict[str, Any] = data.get("baselines") or {}
    parts: list[Markup] = []

    # ------------------------------------------------------------ headline
    groups = ((ctx.results.get("scenario") or {}).get("topology") or {}).get("device_groups") or []
    per_profile: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        g = device_group(str(r.get("device")), groups)
        profile = str(g.get("profile")) if g else str(r.get("device"))
        per_profile.setdefault(profile, []).append(r)
    for profile, rs in per_profile.items():
        where = Counter(
            str(r["decision"]) + ("" if r.get("target") in (None, "-") else f"→{r['target']}")
            for r in rs
        )
        h.profile(profile, "inference runs", ", ".join(f"{k} ×{n}" for k, n in where.items()))
        h.profile(profile, "predicted latency per request (ms)", _mean(rs, "latency_ms"))
        h.profile(profile, "device energy per request (mJ)", _mean(rs, "energy_mj"))
    planned_on = data.get("planned_on") or {}
    if planned_on:
        parts.append(
            Markup("<p>Planned on <strong>{}</strong>: {}.</p>").format(
                planned_on.get("artifact"), planned_on.get("why")
            )
        )
    plan_ms, plan_mj = _mean(rows, "latency_ms"), _mean(rows, "energy_mj")
    if plan_ms is not None:
        vs = ", ".join(
            f"all-{k} {b['mean_latency_ms']:.4g} ms" for k, b in baselines.items() if b is not None
        )
        h.fact(
            "offloading",
            f"plan ({data.get('policy')}): {(data.get('summary') or {}).get('decisions', '')}, "
            f"mean {plan_ms:.4g} ms per request" + (f" (vs {vs})" if vs else ""),
        )
    for note in data.get("notes") or []:  # e.g. a profile taken under load
        ctx.warn(f"offloading: {note}")
    missing = [str(r["device"]) for r in rows if r.get("meets_deadline") is False]
    if missing:
        ctx.warn(
            f"offloading: {len(missing)} of {len(rows)} devices miss their deadline "
            f"({', '.join(missing[:5])}{', …' if len(missing) > 5 else ''})"
        )
    local = baselines.get("local")
    if local is not None and plan_ms is not None and plan_ms > local["mean_latency_ms"] * 1.001:
        ctx.warn(
            f"offloading: the plan's mean latency {plan_ms:.4g} ms is above all-local "
            f"({local['mean_latency_ms']:.4g} ms); the objective or the deadlines favour energy"
        )
    executed = data.get("executed_splits") or []
    worst = max((float(e.get("max_abs_diff") or 0.0) for e in executed), default=0.0)
    if worst > SPLIT_DIFF_TOLERANCE:
        ctx.warn(
            f"offloading: an executed split differs from the unsplit model by {worst:.3g} "
            f"(max |diff| of the outputs, tolerance {SPLIT_DIFF_TOLERANCE:g})"
        )

    # ------------------------------------------------------------ body
    model = data.get("model") or {}
    overview = {
        "placement policy": data.get("policy"),
        "solve time (ms)": data.get("solve_ms"),
        "objective value": data.get("objective"),
        "model layers": model.get("nodes"),
        "whole model here (ms, profiled)": model.get("full_ms_here"),
        "profile measured on": model.get("measured_on"),
        "profile rounds": model.get("profile_rounds"),
    }
    parts.append(kv_table(overview))
    if rows:
        cols = [c for c in _PLAN_COLUMNS if any(c in r for r in rows)]
        parts.append(
            table(
                rows,
                columns=cols,
                headers=_PLAN_COLUMNS,
                caption="Plan per device: decision, split point and predicted cost per request "
                "(queueing included) against all-local / all-edge / all-cloud",
                row_class=lambda r: "bad" if r.get("meets_deadline") is False else "",
            )
        )
    compare: dict[str, dict[str, Any]] = {}
    if plan_ms is not None:
        compare["plan"] = {"mean latency (ms)": plan_ms, "mean device energy (mJ)": plan_mj}
    for k, b in baselines.items():
        compare[f"all-{k}"] = (
            {"mean latency (ms)": None, "mean device energy (mJ)": None, "note": "not possible"}
            if b is None
            else {
                "mean latency (ms)": b["mean_latency_ms"],
                "mean device energy (mJ)": b["mean_energy_mj"],
            }
        )
    if compare:
        parts.append(
            table(
                compare,
                index="placement",
                caption="The plan against the baselines",
                row_class=lambda r: "chosen" if r.get("placement") == "plan" else "",
            )
        )
    util = data.get("utilization") or {}
    if util:
        parts.append(
            table(
                [{"resource": k, "utilisation": v} for k, v in util.items()],
                caption="Utilisation of each server and device under the plan",
            )
        )
    ee = data.get("early_exit")
    if ee:
        parts.append(_early_exit_part(ee, ctx))
    parts.append(ctx.figures(figures))
    timeline = data.get("timeline") or []
    if timeline:
        parts.append(table(timeline, caption="Re-planning over the link traces (adaptive policy)"))
    if executed:
        parts.append(
            table(
                executed,
                caption="Splits executed for real: head → serialized tensors → tail vs the "
                "unsplit model",
            )
        )
    return Markup("").join(parts)


def _early_exit_part(ee: dict[str, Any], ctx: RenderContext) -> Markup:
    """The early-exit table: where the exit sits, which data chose it, test figures, plans."""
    roles = ee.get("data_roles") or {}
    if ee.get("skipped"):
        ctx.warn(f"offloading: early exit skipped: {ee['skipped']}")
        return kv_table({"early exit": "skipped", "reason": ee["skipped"], **roles})
    test, val, plan = ee.get("test") or {}, ee.get("validation") or {}, ee.get("plan") or {}
    rate = test.get("exit_rate")
    ctx.headline.fact(
        "early exit",
        f"after block {ee.get('after_block')}: test exit rate "
        + (f"{rate:.2f}" if isinstance(rate, int | float) else "?")
        + f", cascade accuracy {test.get('accuracy_cascade')}",
    )
    rows = {
        "exit after block": ee.get("after_block"),
        "exit point chosen by": ee.get("chosen_by"),
        "confidence / threshold": f"{ee.get('confidence')} / {ee.get('threshold')}",
        "exit head fitted on": roles.get("exit_head_fit"),
        "threshold chosen on": roles.get("threshold"),
        "validation exit rate (95 % lower bound, planner assumes)": (
            f"{val.get('exit_rate')} ({val.get('exit_rate_lower')})"
        ),
        "test exit rate": rate,
        "test accuracy: cascade / full / exit head": (
            f"{test.get('accuracy_cascade')} / {test.get('accuracy_full')} / "
            f"{test.get('accuracy_exit_head')}"
        ),
        "plan mean latency with / without exit (ms)": (
            f"{plan.get('mean_latency_ms_with_exit')} / {plan.get('mean_latency_ms_without_exit')}"
        ),
        "devices choosing an exit option": plan.get("devices_choosing_exit"),
    }
    return kv_table(
        rows,
        caption="Early exit (BranchyNet): exit point and threshold chosen "
        "on the validation split, figures on the test split",
    )
