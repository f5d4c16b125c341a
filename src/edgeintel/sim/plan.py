"""The simulator's initial plan: each device group placed by the registered placement policy,
and why (one sentence per group with the numbers that decided it: the cost model's options at
t = 0 and the shared cell uplinks the plan keeps below capacity), for ``PlannerPolicy``, the
report and results.json (``initial_plan``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeintel.offloading.placement import (
    PLACEMENTS,
    FleetProblem,
    Option,
    Resource,
    evaluate_assignment,
)

if TYPE_CHECKING:
    from edgeintel.scenario import Scenario
    from edgeintel.sim.model import SimModel

__all__ = ["initial_plan", "plan_reasons"]


def initial_plan(
    sc: Scenario, model: SimModel, counts: np.ndarray, rate_hz: float
) -> tuple[list[int], dict[str, Any], list[tuple[int, ...]]]:
    """Place each device group (one representative carrying the group's whole request rate)
    with the registered placement policy; a slot per group, the plan's record and, per group,
    the slots that would put a cell uplink above ``max_utilization`` if the whole group took
    them (the rest of the plan unchanged): ``PlannerPolicy`` keeps off them, as a device's
    own costs see server queues but not the shared uplink.

    Each cell's shared uplink is a ``link`` resource (one task's transfer time,
    ``input_bytes`` x 8 / the cell's Mbit/s, as the simulator's cell FIFO): a group's
    offloading options load the uplinks of the cells its devices attach to at t=0, in
    proportion to its devices there, so no plan offloads more than a cell can carry.
    """
    e_n = model.num_edges
    s = model.settings
    uplink_ms = [8.0 * s.input_bytes / (mbps * 1000.0) for mbps in model.cell_mbps]
    resources: dict[str, Resource] = {}
    for e in range(e_n + 1):
        resources[model.server_name(e)] = Resource(
            model.server_name(e),
            "cloud" if e == e_n else "edge",
            model.server_workers[e],
            0.0,
            s.task_ms / model.server_speed[e],
        )
    options, names, rates, idle = [], [], [], []
    slot_of: list[list[int]] = []
    for g, grp in enumerate(sc.devices):
        name = f"group:{grp.name}"
        members = np.flatnonzero(model.dev_group == g)
        if members.size == 0:
            continue
        d = int(members[0])
        prof = sc.device_profiles[grp.profile]
        resources[name] = Resource(
            name, "device", int(counts[g]), 0.0, s.task_ms / prof.compute_speed
        )
        opts = model.options(d, int(model.home[d]), 0, 0, 0)
        kept = [(i, o) for i, o in enumerate(opts) if o is not None]
        cells, per_cell = np.unique(model.home[members], return_counts=True)
        links: list[tuple[str, float]] = []
        for c, k in zip(cells.tolist(), per_cell.tolist(), strict=True):
            if c < e_n:
                link = f"uplink:{model.edge_names[c]}"
                resources.setdefault(link, Resource(link, "link", 1, 0.0, uplink_ms[c]))
                links.append((link, uplink_ms[c] * k / members.size))
        loads = {"local": ((name, 0.0),), "d2d": ()}
        if model.helper.size and model.helper[d] >= 0:  # the helper's group runs the task
            loads["d2d"] = ((f"group:{sc.devices[int(model.dev_group[model.helper[d]])].name}",
                             0.0),)  # fmt: skip
        fixed = [
            replace(
                o,
                target=loads["d2d"][0][0] if o.tier == "d2d" and loads["d2d"] else o.target,
                device_load_ms=tuple(
                    (r, o.base.device_ms if o.tier == "local" else o.server_ms)
                    for r, _ in loads[o.tier]
                )
                if o.tier in loads
                else tuple(links),
            )
            for _, o in kept
        ]
        options.append(fixed)
        slot_of.append([i for i, _ in kept])
        names.append(name)
        rates.append(rate_hz * int(counts[g]))
        idle.append(prof.power_idle_w)
    problem = FleetProblem(
        devices=names,
        options=options,
        rates_hz=np.array(rates),
        deadlines_ms=np.full(len(names), np.inf),
        wait_weight=np.ones(len(names)),
        idle_w=np.array(idle),
        resources=resources,
    )
    choice = PLACEMENTS.get(s.placement)(problem)
    plan = evaluate_assignment(problem, choice, policy=s.placement, strict=False)
    top = problem.max_utilization + 1e-9
    blocked_of: list[tuple[int, ...]] = []
    over: dict[str, list[str]] = {}
    for i, opts_i in enumerate(options):
        bad = []
        for j in range(len(opts_i)):
            if j == choice[i] or opts_i[j].tier == "local":
                continue
            util = evaluate_assignment(
                problem, [*choice[:i], j, *choice[i + 1 :]], strict=False
            ).utilization
            if any(
                u > top and u > plan.utilization[r] and resources[r].kind == "link"
                for r, u in util.items()
            ):
                bad.append(j)
        blocked_of.append(tuple(slot_of[i][j] for j in bad))
        if bad:
            over[names[i]] = [opts_i[j].label for j in bad]
    slots = [0] * len(sc.devices)
    blocked: list[tuple[int, ...]] = [()] * len(sc.devices)
    gi = 0
    for g in range(len(sc.devices)):
        if np.any(model.dev_group == g):
            slots[g] = slot_of[gi][choice[gi]]
            blocked[g] = blocked_of[gi]
            gi += 1
    record = {
        "policy": s.placement,
        "groups": {n: lab for n, lab in zip(names, plan.labels, strict=True)},
        "utilization": plan.utilization,
        "within_capacity": bool(
            all(u <= problem.max_utilization + 1e-9 for u in plan.utilization.values())
        ),
        "over_capacity": over,
        "why": plan_reasons(names, options, choice, over, plan.utilization),
    }
    if all(lab == "local" for lab in plan.labels):
        record["all_local"] = True
    return slots, record, blocked


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
