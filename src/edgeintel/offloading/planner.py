"""``OffloadPlanner``: from a model profile and a scenario to per-device options and a fleet plan.

For every device it costs local execution and, for every reachable target
(each edge server = D2E, the cloud = D2C, up to ``d2d.neighbors`` neighbours
attached to the same node = D2D), full offloading and the best hybrid split
found by the split search under that target's link and speed. A target's
link is the device's own link followed by the backbone links on the fewest-hop
path to it: bandwidth is the bottleneck, RTTs add up; ``LinkSpec.at(t_s)``
applies the links' traces, and a hop with bandwidth 0 (an outage) or a
target listed as unreachable removes that target.

With an ``ExitProfile`` (an early-exit version of the model, its exit
probability from validation), every device also gets the exit options: the
device runs up to the exit, the exiting share stops there, and the rest runs
on the device (``exit:local``) or is offloaded from the exit point to each
target (``exit:<target>``): only that share pays the transfer, the server and
its queue (``Option.remote_fraction``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeintel.errors import ConfigError
from edgeintel.offloading.costs import (
    Breakdown,
    LinkState,
    OffloadObjective,
    Power,
    device_energy_j,
)
from edgeintel.offloading.early_exit import ExitProfile, exit_breakdown
from edgeintel.offloading.graph import LayerGraph
from edgeintel.offloading.placement import FleetPlan, FleetProblem, Option, Resource, place
from edgeintel.offloading.profiler import ModelProfile
from edgeintel.offloading.settings import OffloadingSettings
from edgeintel.offloading.split_search import (
    MinCutSplitter,
    SplitContext,
    SplitDecision,
    plan_split,
    split_breakdown,
)

if TYPE_CHECKING:
    from edgeintel.scenario import Device, Scenario

__all__ = ["OffloadPlanner", "Target", "baseline_choice", "trace_times"]


@dataclass(frozen=True)
class Target:
    """Where work can go: node name, tier (d2e, d2c, d2d), compute speed, link to it."""

    name: str
    tier: str
    speed: float
    link: LinkState
    workers: int = 1


def _infra_paths(sc: Scenario, start: str) -> dict[str, list[str]]:
    """Fewest-hop node paths from ``start`` to every infrastructure node (ties by name)."""
    adj: dict[str, list[str]] = {sc.cloud.name: [], **{e.name: [] for e in sc.edge_servers}}
    for link in sc.links:
        a, b = link.between
        adj[a].append(b)
        adj[b].append(a)
    paths = {start: [start]}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in sorted(adj[node]):
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    return paths


def trace_times(sc: Scenario) -> list[float]:
    """Every time (s) at which some link of the scenario changes, with 0."""
    times = {0.0}
    for g in sc.devices:
        times.update(p.t_s for p in g.link.trace_points())
    for link in sc.links:
        times.update(p.t_s for p in link.trace_points())
    return sorted(times)


class OffloadPlanner:
    """Options, fleet problems and plans for one model over one scenario (no clock, no I/O)."""

    def __init__(
        self,
        graph: LayerGraph,
        profile: ModelProfile,
        settings: OffloadingSettings,
        early_exit: ExitProfile | None = None,
    ) -> None:
        if list(profile.node_names) != list(graph.names):
            raise ConfigError("the profile does not belong to this model's layer graph")
        self.graph = graph
        self.profile = profile
        self.settings = settings
        self.early_exit = early_exit
        self.mincut = MinCutSplitter(graph) if settings.splitter == "mincut" else None

    # ------------------------------------------------------------------ one device

    def targets(
        self,
        sc: Scenario,
        device: Device,
        t_s: float = 0.0,
        unreachable: frozenset[str] = frozenset(),
    ) -> list[Target]:
        """Reachable targets of ``device`` at time ``t_s`` (links down / unreachable dropped)."""
        s = self.settings
        bw0, rtt0, _ = device.link.at(t_s)
        out: list[Target] = []
        paths = _infra_paths(sc, device.attach)
        speeds = {
            sc.cloud.name: sc.cloud.compute_speed,
            **{e.name: e.compute_speed for e in sc.edge_servers},
        }
        for node in [e.name for e in sc.edge_servers] + [sc.cloud.name]:
            if node not in paths or node in unreachable:
                continue
            bw, rtt = bw0, rtt0
            for a, b in zip(paths[node], paths[node][1:], strict=False):
                lbw, lrtt, _ = sc.link_between(a, b).at(t_s)
                bw, rtt = min(bw, lbw), rtt + lrtt
            if bw <= 0:
                continue
            cloud = node == sc.cloud.name
            out.append(
                Target(
                    node,
                    "d2c" if cloud else "d2e",
                    speeds[node],
                    LinkState(bw, rtt),
                    s.cloud_workers if cloud else s.server_workers,
                )
            )
        if s.d2d is not None:
            for nb in self.neighbors(sc, device):
                if nb.name not in unreachable:
                    out.append(
                        Target(
                            nb.name,
                            "d2d",
                            nb.profile.compute_speed,
                            LinkState(s.d2d.bandwidth_mbps, s.d2d.rtt_ms),
                        )
                    )
        return out

    def neighbors(self, sc: Scenario, device: Device) -> list[Device]:
        """The devices ``device`` may offload to over D2D (none without ``settings.d2d``):
        up to ``d2d.neighbors`` attached to the same node, the next ones after it."""
        if self.settings.d2d is None:
            return []
        same = [
            d for d in sc.expand_devices() if d.attach == device.attach and d.name != device.name
        ]
        if not same:
            return []
        # the next devices after this one (cyclically), in declaration order
        later = [d for d in same if d.index > device.index] + [
            d for d in same if d.index < device.index
        ]
        return later[: self.settings.d2d.neighbors]

    def context(self, device_speed: float, power: Power, target: Target) -> SplitContext:
        s = self.settings
        prof = self.profile
        return SplitContext(
            device_ms=prof.on(device_speed),
            server_ms=prof.on(target.speed),
            link=target.link,
            power=power,
            # the device packs the intermediate: at its own speed, like its layers
            serialize_ms_per_mb=prof.serialize_on(device_speed, s.int8_intermediate),
            int8=s.int8_intermediate,
            objective=OffloadObjective(s.objective),
            latency_weight=s.latency_weight,
        )

    def best_split(
        self, device_speed: float, power: Power, target: Target, deadline_ms: float | None
    ) -> SplitDecision:
        """The split search towards ``target`` (queueing excluded)."""
        return plan_split(
            self.graph,
            self.context(device_speed, power, target),
            self.settings.splitter,
            deadline_ms,
            self.mincut,
        )

    def deadline(self, device: Device) -> float | None:
        s = self.settings
        return s.deadlines_ms.get(device.group, s.deadline_ms)

    def options(
        self,
        sc: Scenario,
        device: Device,
        t_s: float = 0.0,
        unreachable: frozenset[str] = frozenset(),
    ) -> list[Option]:
        """Local, then full offload and the best hybrid split per reachable target."""
        prof = device.profile
        power = Power(prof.power_compute_w, prof.power_tx_w, prof.power_idle_w)
        dev_ms = self.profile.on(prof.compute_speed)
        n = self.graph.num_nodes
        local_b = Breakdown(device_ms=float(dev_ms.sum()))
        refs = (max(local_b.latency_ms, 1e-9), max(device_energy_j(local_b, power), 1e-12))
        opts = [
            self._option(
                "local",
                "local",
                None,
                local_b,
                power,
                refs,
                0.0,
                ((device.name, local_b.device_ms),),
                np.ones(n, dtype=bool),
            )
        ]
        deadline = self.deadline(device)
        for tg in self.targets(sc, device, t_s, unreachable):
            ctx = self.context(prof.compute_speed, power, tg)
            full = np.zeros(n, dtype=bool)
            cands = [(tg.tier, full)]
            best = self.best_split(prof.compute_speed, power, tg, deadline)
            if best.kind == "split":
                cands.append(("hybrid", best.mask))
            for tier, mask in cands:
                b = split_breakdown(self.graph, ctx, mask)
                srv = float(ctx.server_ms[~mask].sum())
                head = b.device_ms + b.serialize_ms
                load: tuple[tuple[str, float], ...] = ((device.name, head),) if head > 0 else ()
                if tg.tier == "d2d":
                    load = (*load, (tg.name, srv))
                k = int(mask.sum())
                label = f"{tg.tier}:{tg.name}" if tier != "hybrid" else f"hybrid:{tg.name}@{k}/{n}"
                opts.append(self._option(label, tier, tg.name, b, power, refs, srv, load, mask))
        if self.early_exit is not None:
            opts += self._exit_options(sc, device, power, refs, t_s, unreachable)
        return opts

    def _exit_options(
        self,
        sc: Scenario,
        device: Device,
        power: Power,
        refs: tuple[float, float],
        t_s: float,
        unreachable: frozenset[str],
    ) -> list[Option]:
        """``exit:local`` and ``exit:<target>``: expected costs with the exit probability."""
        ee = self.early_exit
        assert ee is not None
        speed = device.profile.compute_speed
        n = self.graph.num_nodes
        b = exit_breakdown(ee, speed)
        out = [
            replace(
                self._option(
                    "exit:local",
                    "exit",
                    None,
                    b,
                    power,
                    refs,
                    0.0,
                    ((device.name, b.device_ms),),
                    np.ones(n, dtype=bool),
                ),
                mask=None,
            )
        ]
        for tg in self.targets(sc, device, t_s, unreachable):
            b = exit_breakdown(ee, speed, tg.speed, tg.link)
            load: tuple[tuple[str, float], ...] = ((device.name, b.device_ms + b.serialize_ms),)
            if tg.tier == "d2d":
                load = (*load, (tg.name, b.server_ms))
            opt = self._option(
                f"exit:{tg.name}",
                "exit",
                tg.name,
                b,
                power,
                refs,
                b.server_ms,
                load,
                np.ones(n, dtype=bool),
            )
            out.append(replace(opt, mask=None, remote_fraction=1.0 - ee.p_exit))
        return out

    def _option(
        self,
        label: str,
        tier: str,
        target: str | None,
        b: Breakdown,
        power: Power,
        refs: tuple[float, float],
        server_ms: float,
        load: tuple[tuple[str, float], ...],
        mask: np.ndarray,
    ) -> Option:
        s = self.settings
        return Option.costed(
            label,
            tier,
            target,
            b,
            power,
            s.objective,
            s.latency_weight,
            refs,
            server_ms,
            load,
            device_nodes=int(mask.sum()),
            total_nodes=self.graph.num_nodes,
            mask=mask,
        )

    # ------------------------------------------------------------------ the fleet

    def problem(
        self, sc: Scenario, t_s: float = 0.0, unreachable: frozenset[str] = frozenset()
    ) -> FleetProblem:
        """The fleet placement problem of every device of ``sc`` at time ``t_s``."""
        s = self.settings
        devices = sc.expand_devices()
        for name in s.server_load:
            if name != sc.cloud.name and name not in {e.name for e in sc.edge_servers}:
                raise ConfigError(f"settings.offloading.server_load: unknown server {name!r}")
        for group in s.deadlines_ms:
            if group not in {g.name for g in sc.devices}:
                raise ConfigError(
                    f"settings.offloading.deadlines_ms: unknown device group {group!r}"
                )
        resources: dict[str, Resource] = {}
        full_here = float(np.sum(self.profile.on(1.0)))
        for e in sc.edge_servers:
            resources[e.name] = Resource(
                e.name,
                "edge",
                s.server_workers,
                s.server_load.get(e.name, 0.0),
                full_here / e.compute_speed,
            )
        cl = sc.cloud
        resources[cl.name] = Resource(
            cl.name,
            "cloud",
            s.cloud_workers,
            s.server_load.get(cl.name, 0.0),
            full_here / cl.compute_speed,
        )
        for d in devices:
            resources[d.name] = Resource(
                d.name, "device", 1, 0.0, full_here / d.profile.compute_speed
            )
        options, weights, idle, deadlines = [], [], [], []
        for d in devices:
            opts = self.options(sc, d, t_s, unreachable)
            options.append(opts)
            p = d.profile
            local_ms = opts[0].base.latency_ms
            local_j = opts[0].energy_j
            w = s.latency_weight
            weights.append(
                {
                    "latency": 1.0,
                    "energy": p.power_idle_w / 1000.0,
                    "weighted": w / max(local_ms, 1e-9)
                    + (1 - w) * p.power_idle_w / 1000.0 / max(local_j, 1e-12),
                }[s.objective]
            )
            idle.append(p.power_idle_w)
            dl = self.deadline(d)
            deadlines.append(np.inf if dl is None else dl)
        return FleetProblem(
            devices=[d.name for d in devices],
            options=options,
            rates_hz=np.full(len(devices), s.request_rate_hz),
            deadlines_ms=np.array(deadlines, dtype=float),
            wait_weight=np.array(weights),
            idle_w=np.array(idle, dtype=float),
            resources=resources,
            max_utilization=s.max_utilization,
            levels=np.linspace(s.max_utilization / 18, s.max_utilization, 18),
        )

    def plan(
        self, sc: Scenario, t_s: float = 0.0, unreachable: frozenset[str] = frozenset()
    ) -> tuple[FleetProblem, FleetPlan]:
        """The fleet plan at time ``t_s`` with the configured placement policy."""
        problem = self.problem(sc, t_s, unreachable)
        return problem, place(problem, self.settings.placement, self.settings.exact_max_devices)


def baseline_choice(problem: FleetProblem, sc: Scenario, kind: str) -> list[int] | None:
    """Option indices of all-local, all-edge (the attached edge server, else the nearest one)
    or all-cloud; ``None`` when some device has no such option."""
    out = []
    attach = {d.name: d.attach for d in sc.expand_devices()}
    for name, opts in zip(problem.devices, problem.options, strict=True):
        if kind == "local":
            idx = [i for i, o in enumerate(opts) if o.tier == "local"]
        elif kind == "edge":
            idx = [i for i, o in enumerate(opts) if o.tier == "d2e" and o.target == attach[name]]
            idx = idx or [i for i, o in enumerate(opts) if o.tier == "d2e"]
        elif kind == "cloud":
            idx = [i for i, o in enumerate(opts) if o.tier == "d2c"]
        else:
            raise ConfigError(f"unknown baseline {kind!r}; expected local, edge or cloud")
        if not idx:
            return None
        out.append(idx[0])
    return out


def plan_rows(
    problem: FleetProblem, plan: FleetPlan, baselines: dict[str, Any]
) -> list[dict[str, Any]]:
    """One JSON row per device: decision, split point, predicted latency / energy vs baselines."""
    rows = []
    for d, name in enumerate(problem.devices):
        opt = problem.options[d][plan.choice[d]]
        row: dict[str, Any] = {
            "device": name,
            "decision": opt.tier,
            "target": opt.target or "-",
            "split": f"{opt.device_nodes}/{opt.total_nodes}",
            "latency_ms": round(float(plan.latency_ms[d]), 3),
            "energy_mj": round(float(plan.energy_j[d]) * 1e3, 3),
            "queue_ms": round(float(plan.wait_ms[d]), 3),
            "meets_deadline": name not in plan.misses,
        }
        for k, bp in baselines.items():
            row[f"{k}_ms"] = None if bp is None else round(float(bp.latency_ms[d]), 3)
            row[f"{k}_mj"] = None if bp is None else round(float(bp.energy_j[d]) * 1e3, 3)
        rows.append(row)
    return rows
