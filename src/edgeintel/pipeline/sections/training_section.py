"""Report sections of the training stages: the central baseline and edge (solo / federated /
hierarchical) training, with their accuracy, bytes per tier and energy in the headline."""

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

__all__ = ["TIER_LABELS", "render_edge_training", "render_training"]

#: Link tiers of the engine's byte counters, as the report names them.
TIER_LABELS = {
    "device_to_edge": ("device ↔ edge", "up"),
    "edge_to_device": ("device ↔ edge", "down"),
    "edge_to_cloud": ("edge ↔ cloud", "up"),
    "cloud_to_edge": ("edge ↔ cloud", "down"),
}
#: Short headers of the per-round table (16 columns do not fit a page: bytes per tier are
#: summed per round; the per-tier totals have their own table).
_ROUND_HEADERS = {"duration_s": "s", "energy_j": "J", "bytes": "kB moved"}


def _n_test(ctx: RenderContext) -> int | None:
    n = (ctx.results.get("data") or {}).get("test_samples")
    return n if isinstance(n, int) else None


@register_section("training", title="Training (central baseline)", order=20)
def render_training(data: dict[str, Any], figures: list[Figure], ctx: RenderContext) -> Markup:
    hist = data.get("history") or []
    acc = data.get("final_accuracy")
    ctx.headline.accuracy(
        "central baseline", acc, note="all training data in one place: the reference"
    )
    check_accuracy(
        ctx,
        "central baseline",
        [h.get("val_accuracy") for h in hist],
        unit="epoch",
        n_test=_n_test(ctx),
    )
    task = data.get("task")
    if task:  # a kind other than classification: its headline metric and baseline
        ctx.headline.fact(f"central baseline ({task['kind']})", task.get("summary"))
        if not task.get("beats_baseline"):
            ctx.warn(
                f"central baseline: {task['metric']} does not beat the best trivial baseline "
                f"({task['baseline']['name']}, {task['baseline']['value']:.4g})"
            )
    info = {k: v for k, v in data.items() if k not in ("history", "config", "task")}
    parts = [kv_table(info), kv_table(data.get("config") or {}, caption="Configuration")]
    if task:
        figures_row = {
            **task.get("test", {}),
            f"baseline: {task['baseline']['name']}": task["baseline"]["value"],
        }
        parts.append(kv_table(figures_row, caption=f"Test figures ({task['kind']})"))
    parts.append(ctx.figures(figures))
    if hist:
        parts.append(table(hist, caption="Per epoch"))
    return Markup("").join(parts)


def _round_rows(hist: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """One row per round, short enough for a page: the validation figure names the task
    kind's metric, bytes are the round's total over every link tier (kB)."""
    rows = []
    for r in hist:
        row: dict[str, Any] = {}
        for k, v in r.items():
            if k == "bytes":
                v = round(sum((v or {}).values()) / 1e3, 1)
            row[f"val {metric}" if k == "val_metric" else _ROUND_HEADERS.get(k, k)] = v
        rows.append(row)
    return rows


def _metric_fact(ctx: RenderContext, metric: str, label: str, value: Any, note: str) -> None:
    """A headline figure in the task kind's metric: the accuracy list for a classifier (with
    its chance checks), a plain fact for RMSE or AUROC."""
    if metric == "accuracy":
        ctx.headline.accuracy(label, value, note=note)
    elif isinstance(value, float | int):
        ctx.headline.fact(f"{label} ({metric})", f"{value:.4g} ({note})")


@register_section("edge_training", title="Edge training", order=30)
def render_edge_training(data: dict[str, Any], figures: list[Figure], ctx: RenderContext) -> Markup:
    mode = str(data.get("mode", "?"))
    metric = str(data.get("metric") or "accuracy")  # the task kind's headline metric
    h = ctx.headline
    parts: list[Markup] = []
    if mode == "solo":
        devices = data.get("devices") or {}
        for name, d in devices.items():
            _metric_fact(
                ctx,
                metric,
                f"solo on {name}",
                d.get(f"test_{metric}"),
                f"profile {d.get('profile')}",
            )
            h.profile(str(d.get("profile")), "trains", f"alone on its {d.get('samples')} samples")
        if metric == "accuracy":
            check_accuracy(
                ctx,
                "solo training",
                [(data.get("summary") or {}).get("mean_test_accuracy")],
                n_test=_n_test(ctx),
            )
        parts.append(kv_table({k: v for k, v in data.items() if k != "devices"}))
        if devices:
            parts.append(table(devices, index="device", caption="One device per profile"))
        parts.append(ctx.figures(figures))
        return Markup("").join(parts)

    hist = data.get("history") or []
    summary = data.get("summary") or {}
    final = summary.get(f"final_{metric}")
    chosen = (
        f", round {summary['selected_round']} exported ({summary.get('selected_on')})"
        if summary.get("selected_round") is not None
        else ""
    )
    _metric_fact(
        ctx,
        metric,
        f"{mode} (edge)",
        final,
        f"{summary.get('rounds')} rounds over the devices{chosen}",
    )
    central = summary.get(f"central_{metric}")
    if central is None:
        central = (ctx.results.get("training") or {}).get(f"final_{metric}")
    if isinstance(central, float | int) and isinstance(final, float | int):
        acc = metric == "accuracy"
        diff = f"{100 * (final - central):+.1f} points" if acc else f"{final - central:+.4g}"
        fmt = ".3f" if acc else ".4g"
        h.fact(
            "edge vs central",
            f"{mode} training reaches {final:{fmt}} against {central:{fmt}} for the central "
            f"baseline ({diff}) without moving raw data",
        )
    if f"clean_{metric}" in summary:
        _metric_fact(
            ctx, metric, f"{mode}, same run without attack", summary[f"clean_{metric}"], "clean"
        )
    if metric == "accuracy":  # chance and improvement checks of a classifier's accuracy
        check_accuracy(
            ctx, f"{mode} training", [r.get("accuracy") for r in hist], n_test=_n_test(ctx)
        )
    if (summary.get("rounds") or 0) < 3:
        ctx.warn(f"{mode} training ran only {summary.get('rounds')} round(s)")
    totals = data.get("bytes_total") or {}
    for tier, n in totals.items():
        where, way = TIER_LABELS.get(tier, (tier, ""))
        h.tier(where, f"training bytes {way}", n)
    rounds = max(len(hist), 1)
    energy = sum(float(r.get("energy_j") or 0.0) for r in hist)
    seconds = sum(float(r.get("duration_s") or 0.0) for r in hist)
    if hist:
        h.tier("device ↔ edge", "device energy, training (J)", round(energy, 4))
        h.tier("device ↔ edge", "modelled training time (s)", round(seconds, 3))
        h.fact(
            "training cost",
            f"{energy:.3g} J of device energy and {seconds:.3g} s of modelled time over "
            f"{rounds} rounds ({energy / rounds:.3g} J per round)",
        )
    cfg = data.get("config") or {}
    h.fact(
        "edge training",
        f"{mode}: {cfg.get('algorithm', '?')}, aggregation {cfg.get('aggregation', '?')}, "
        f"update compressor {cfg.get('compressor', '?')}"
        + (f", attack {cfg['attack']}" if cfg.get("attack") else ""),
    )
    info = {
        k: v
        for k, v in data.items()
        if k not in ("history", "config", "summary", "bytes_total", "clean_reference", "privacy")
    }
    parts.append(kv_table({**summary, **info}, caption="Summary"))
    parts.append(ctx.figures(figures))
    if totals:
        tier_rows: dict[str, dict[str, Any]] = {}
        for tier, n in totals.items():
            where, way = TIER_LABELS.get(tier, (tier, ""))
            tier_rows.setdefault(where, {})[f"bytes {way}"] = n
            tier_rows[where][f"MB {way}"] = round(n / 1e6, 4)
        parts.append(table(tier_rows, index="tier", caption="Bytes per link tier (all rounds)"))
    parts.append(kv_table(cfg, caption="Configuration"))
    if hist:
        parts.append(table(_round_rows(hist, metric), caption="Per round"))
    privacy = data.get("privacy")
    if isinstance(privacy, dict):
        dp, sa = privacy.get("dp"), privacy.get("secure_aggregation")
        said = []
        if isinstance(dp, dict):
            said.append(
                f"client-level DP, epsilon {dp.get('epsilon', float('nan')):.3g} at delta "
                f"{dp.get('delta')}" + (" (stopped by the budget)" if dp.get("stopped_by_budget")
                                        else "")
                + ("" if dp.get("epsilon_with_fine_tuning") is None else
                   f"; {dp['epsilon_with_fine_tuning']:.3g} with federated fine-tuning "
                   "(one accountant)")
            )  # fmt: skip
        if isinstance(sa, dict):
            said.append("secure aggregation (the server sees only sums)")
        if said:
            h.fact("privacy", "; ".join(said))
        parts.append(Markup("<h3>Privacy</h3>"))
        for key, sub in privacy.items():
            if isinstance(sub, dict):
                curve = sub.get("epsilon_vs_round")
                flat = {k: v for k, v in sub.items() if k != "epsilon_vs_round"}
                parts.append(kv_table(flat, caption=key.replace("_", " ")))
                if curve:
                    parts.append(details("epsilon per round", table(curve, collapse_after=10**6)))
            else:
                parts.append(kv_table({key: sub}))
    clean = data.get("clean_reference")
    if isinstance(clean, dict):
        parts.append(
            details(
                "clean reference run (no attack), per round",
                table(_round_rows(clean.get("history") or [], metric), collapse_after=10**6),
            )
        )
    return Markup("").join(parts)
