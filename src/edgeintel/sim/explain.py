"""Why the simulator's initial plan is what it is: one sentence per device group, with the
numbers that decided it (the cost model's options at t = 0 and the uplinks the plan keeps
below capacity), for the report and results.json (``initial_plan.why``)."""

from __future__ import annotations

from collections.abc import Sequence

from edgeintel.offloading.placement import Option

__all__ = ["plan_reasons"]


def _cost(o: Option) -> str:
    return f"{o.base.latency_ms:.3g} ms, {o.energy_j * 1e3:.3g} mJ"


def plan_reasons(
    names: Sequence[str],
    options: Sequence[Sequence[Option]],
    choice: Sequence[int],
    over: dict[str, list[str]],
    utilization: dict[str, float],
) -> dict[str, str]:
    """Per group: the chosen option and why, e.g. "local: 0.66 ms, 0.53 mJ on the device vs
    d2e:micro-1 44.9 ms, 3.29 mJ (over capacity: uplink:micro-1 at 1.4x)"."""
    out: dict[str, str] = {}
    for name, opts, j in zip(names, options, choice, strict=True):
        chosen = opts[j]
        others = []
        for k, o in enumerate(opts):
            if k == j:
                continue
            note = (
                " (over capacity: would saturate a shared cell uplink)"
                if o.label in over.get(name, [])
                else ""
            )
            others.append(f"{o.label} {_cost(o)}{note}")
        where = "on the device" if chosen.tier == "local" else f"via {chosen.target}"
        why = f"{chosen.label}: {_cost(chosen)} {where}"
        if others:
            why += " vs " + "; ".join(others)
        links = [f"{r} at {u:.2g}" for r, u in utilization.items() if r.startswith("uplink:")]
        if chosen.tier != "local" and links:
            why += f" (uplink utilisation {', '.join(links[:3])})"
        out[name.removeprefix("group:")] = why
    return out
