"""What each component bought on a run: the top-level ``payoff`` object of results.json.

Computed after the stages from figures they already measured (nothing is re-timed here),
so the terminal summary, results.json and the report quote the same numbers. Per component
``{"metric", "with", "without", "unit", "better", "section", "why"}``:

- ``offloading``: the plan's mean per-request latency (or device energy, by the scenario's
  ``offloading.objective``) against all-local;
- ``filter``: device time (ms, all devices) with the redundancy filter (its own cost
  included) against running the model on every input;
- ``result_cache``: edge time per request (ms) with the cache (lookup on every request,
  the model on misses) against the model on every request; a server where the cache stands
  aside (a lookup costs at least the model) saves nothing;
- ``compression``: mean device latency (ms) of the artifact each profile receives against
  fp32 on that profile;
- ``training``: the edge-trained model's test value of the task kind's headline metric
  (accuracy, RMSE, AUROC: the section's ``metric``) against the central baseline; ``better``
  when within ``settings.training.central_tolerance`` (in that metric's unit) while no raw
  data left the devices.

``why`` is the one sentence, with the numbers that decided it, that the component's report
section and terminal summary open with (``report.sections.payoff_sentences``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["COMPONENT_SECTIONS", "compute_payoff"]

#: payoff component -> the results section whose report part opens with its sentence
COMPONENT_SECTIONS = {
    "offloading": "offloading",
    "filter": "caching",
    "result_cache": "caching",
    "compression": "compression",
    "training": "edge_training",
}


def _r(v: float, digits: int = 4) -> float:
    return round(float(v), digits)


def _ms(v: float) -> str:
    """A duration for a sentence: 3 significant figures."""
    return f"{v:.3g} ms"


def _offloading(res: Mapping[str, Any], objective: str) -> dict[str, Any] | None:
    sec = res.get("offloading") or {}
    rows = sec.get("devices") or []
    base = (sec.get("baselines") or {}).get("local")
    if not rows or not base:
        return None
    energy = objective == "energy"
    key, unit, what = (
        ("energy_mj", "mJ", "device energy") if energy else ("latency_ms", "ms", "latency")
    )
    with_ = sum(float(r[key]) for r in rows) / len(rows)
    without = float(base["mean_energy_mj" if energy else "mean_latency_ms"])
    suffix = "mj" if energy else "ms"

    def mean(col: str) -> float | None:
        vals = [float(r[col]) for r in rows if isinstance(r.get(col), int | float)]
        return sum(vals) / len(vals) if vals else None

    edge, cloud = mean(f"edge_{suffix}"), mean(f"cloud_{suffix}")
    others = ", ".join(
        f"all-{n} {v:.3g} {unit}" for n, v in (("edge", edge), ("cloud", cloud)) if v is not None
    )
    if all(r.get("decision") == "local" for r in rows):
        why = (
            f"all local: {with_:.3g} {unit} mean {what} on the devices vs {others} "
            "(offloading costs more than it saves)"
        )
    else:
        decisions = (sec.get("summary") or {}).get("decisions", "")
        why = (
            f"{decisions}: mean {what} {with_:.3g} {unit} vs {without:.3g} {unit} all-local "
            f"({with_ / without:.2f}x; {others})"
            if without > 0
            else f"{decisions}: mean {what} {with_:.3g} {unit} ({others})"
        )
    return {
        "metric": f"mean {what} per request (plan vs all-local)",
        "with": _r(with_),
        "without": _r(without),
        "unit": unit,
        "better": with_ < without,
        "why": why,
    }


def _filter(res: Mapping[str, Any]) -> dict[str, Any] | None:
    per = (((res.get("caching") or {}).get("filter")) or {}).get("per_device") or {}
    # a device with no inputs to stream (an empty shard) has no filter figures
    per = {name: d for name, d in per.items() if "inputs" in d}
    if not per:
        return None
    with_ = without = 0.0
    losing: list[str] = []
    aside: list[str] = []
    skipped = inputs = 0
    f_ms = m_ms = 0.0
    for name, d in per.items():
        full = float(d["inputs"]) * float(d["model_ms_per_input"])
        saved = float(d["compute_saved_ms"])
        without += full
        with_ += full - saved
        skipped += int(d["skipped"])
        inputs += int(d["inputs"])
        f_ms += float(d["filter_ms_per_input"])
        m_ms += float(d["model_ms_per_input"])
        if d.get("stands_aside"):  # decided on the profiling segment: it would not pay
            aside.append(str(name))
        elif saved <= 0:
            losing.append(str(name))
    n = len(per)
    skip = skipped / max(1, inputs)
    if len(aside) == n:
        reason = str(per[aside[0]].get("reason") or "").removeprefix("stands aside: ")
        why = (
            f"stands aside on every device (e.g. {aside[0]}: {reason}); {without:.4g} ms of "
            "device time either way"
        )
    else:
        verdict = (
            f"costs more than it saves on {len(losing)} of {n} devices"
            if losing
            else "saves device time on every device where it runs"
            if aside
            else "saves device time on every device"
        )
        stood = f", stands aside on {len(aside)}" if aside else ""
        why = (
            f"skips {skip:.1%} of inputs at {f_ms / n:.3g} ms per input (filter) vs "
            f"{m_ms / n:.3g} ms (model): {with_:.4g} ms of device time with vs "
            f"{without:.4g} ms without, {verdict}{stood}"
        )
    return {
        "metric": "device time over all devices (filter cost included)",
        "with": _r(with_, 3),
        "without": _r(without, 3),
        "unit": "ms",
        "better": with_ < without,
        "devices_losing": losing,
        "stands_aside": aside,
        "skip_fraction": _r(skip),
        "why": why,
    }


def _result_cache(res: Mapping[str, Any]) -> dict[str, Any] | None:
    per = (((res.get("caching") or {}).get("result_cache")) or {}).get("per_server") or {}
    if not per:
        return None
    requests = sum(int(v["requests"]) for v in per.values())
    if requests == 0:
        return None
    # per request, weighted by each server's requests: the model on every request without;
    # the lookup on every request plus the model on misses with
    # a server where the cache stands aside runs the model on every request: saves nothing
    aside = [str(k) for k, v in per.items() if v.get("stands_aside")]
    running = {k: v for k, v in per.items() if not v.get("stands_aside")}
    without = sum(float(v["model_ms"]) * int(v["requests"]) for v in per.values()) / requests
    saved = sum(float(v["latency_saved_ms_mean"]) * int(v["requests"]) for v in running.values())
    with_ = without - saved / requests
    if not running:
        reason = str(per[aside[0]].get("reason") or "").removeprefix("stands aside: ")
        why = (
            f"stands aside on every edge server (e.g. {aside[0]}: {reason}); {_ms(without)} "
            "of edge time per request either way"
        )
    else:
        n = sum(int(v["requests"]) for v in running.values())
        lookup = sum(float(v["lookup_ms_mean"]) * int(v["requests"]) for v in running.values())
        reused = sum(int(v["reused"]) for v in running.values())
        stood = f"; stands aside on {len(aside)} of {len(per)} servers" if aside else ""
        why = (
            f"reuses {reused / n:.1%} of requests: lookup {_ms(lookup / n)} on every request "
            f"vs model {_ms(without)}, {_ms(with_)} of edge time per request with vs "
            f"{_ms(without)} without{stood}"
        )
    return {
        "metric": "edge time per request (lookup + model on misses vs model)",
        "with": _r(with_),
        "without": _r(without),
        "unit": "ms",
        "better": with_ < without,
        "stands_aside": aside,
        "why": why,
    }


def _fp32_misses(budget: Mapping[str, Any], row: Mapping[str, Any]) -> bool:
    lat, size = budget.get("max_latency_ms"), budget.get("max_bytes")
    if lat is not None and float(row["latency_ms"]) > float(lat):
        return True
    return size is not None and float(row["kib"]) * 1024 > float(size)


def _quality(metric: str, row: Mapping[str, Any]) -> str:
    """``", rmse 1.02"``: a candidate's validation value of the kind's metric, if recorded."""
    v = row.get(metric)
    return f", {metric} {float(v):.4g}" if isinstance(v, int | float) else ""


def _compression(res: Mapping[str, Any]) -> dict[str, Any] | None:
    comp = res.get("compression") or {}
    per = comp.get("per_profile") or {}
    metric = str(comp.get("metric") or "accuracy")  # the task kind's headline metric
    pairs: list[tuple[str, str, float, float, float, float, str, str]] = []
    budgets_won = 0
    for profile, p in per.items():
        table = {str(r["candidate"]): r for r in p.get("table") or []}
        fp32 = table.get("fp32")
        chosen = table.get(str(p.get("chosen")))
        if fp32 is None or chosen is None:
            continue
        pairs.append(
            (
                str(profile),
                str(p["chosen"]),
                float(chosen["latency_ms"]),
                float(fp32["latency_ms"]),
                float(chosen["kib"]),
                float(fp32["kib"]),
                _quality(metric, chosen),
                _quality(metric, fp32),
            )
        )
        if p["chosen"] != "fp32" and _fp32_misses(p.get("budget") or {}, fp32):
            budgets_won += 1
    if not pairs:
        return None
    with_ = sum(p[2] for p in pairs) / len(pairs)
    without = sum(p[3] for p in pairs) / len(pairs)
    why = "; ".join(
        f"{prof} receives {name} ({_ms(lat)}, {kib:.1f} KiB{q}) vs fp32 ({_ms(lat32)}, "
        f"{kib32:.1f} KiB{q32})"
        if name != "fp32"
        else f"{prof} keeps fp32 ({_ms(lat32)}, {kib32:.1f} KiB{q32}): no compressed candidate won"
        for prof, name, lat, lat32, kib, kib32, q, q32 in pairs
    )
    if budgets_won:
        why += f"; meets a budget fp32 misses on {budgets_won} profile(s)"
    return {
        "metric": "device latency of the artifact each profile receives vs fp32 (mean)",
        "with": _r(with_),
        "without": _r(without),
        "unit": "ms",
        "better": with_ < without or budgets_won > 0,
        "budgets_met_fp32_misses": budgets_won,
        "why": why,
    }


def _training(res: Mapping[str, Any], tolerance: float) -> dict[str, Any] | None:
    sec = res.get("edge_training") or {}
    s = sec.get("summary") or {}
    metric = str(sec.get("metric") or "accuracy")  # the task kind's headline metric
    higher = bool(sec.get("higher_is_better", True))
    edge, central = s.get(f"final_{metric}"), s.get(f"central_{metric}")
    if edge is None or central is None:
        return None
    trained_on = str((res.get("model") or {}).get("trained_on", ""))
    # edge training moves updates, never samples: raw data stays unless the model that
    # ships was trained centrally on pooled data
    raw_left = trained_on.startswith("central")
    # how much worse the edge model is, in the metric's unit (> 0: worse)
    gap = float(central) - float(edge) if higher else float(edge) - float(central)
    within = gap <= tolerance
    why = (
        f"{sec.get('mode', 'edge')} training reaches {metric} {float(edge):.4g} vs "
        f"{float(central):.4g} central ("
        + (f"{gap:.3g} worse" if gap > 0 else f"{-gap:.3g} better" if gap < 0 else "equal")
        + f", tolerance {tolerance:.3g}), "
        + ("no raw data left the devices" if not raw_left else "on pooled raw data")
    )
    return {
        "metric": f"test {metric} (edge-trained vs central baseline)",
        "with": _r(edge),
        "without": _r(central),
        "unit": metric,
        "better": within and not raw_left,
        "tolerance": tolerance,
        "raw_data_left_devices": raw_left,
        "why": why,
    }


def compute_payoff(
    results: Mapping[str, Any], objective: str = "latency", tolerance: float = 0.02
) -> dict[str, dict[str, Any]]:
    """The ``payoff`` object for a run's ``results`` (components that ran; others absent).

    ``objective``: the scenario's offloading objective (``energy`` compares device mJ, else
    ms); ``tolerance``: how much worse than the central baseline edge training may be, in
    the task kind's headline metric (accuracy: a fraction).
    """
    makers: dict[str, Callable[[], dict[str, Any] | None]] = {
        "offloading": lambda: _offloading(results, objective),
        "filter": lambda: _filter(results),
        "result_cache": lambda: _result_cache(results),
        "compression": lambda: _compression(results),
        "training": lambda: _training(results, tolerance),
    }
    out: dict[str, dict[str, Any]] = {}
    for name, make in makers.items():
        entry = make()
        if entry is not None:
            out[name] = {**entry, "section": COMPONENT_SECTIONS[name]}
    return out
