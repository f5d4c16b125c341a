"""The simulated fleet: a scenario and ``SimSettings`` compiled into arrays, before any engine runs.

Everything random is drawn here, from the seed, with numpy (vectorised): device
classes, capability and availability traces, task arrival times (Poisson per
device), the redundancy filter's skips, request keys (Zipf popularity), loss
draws, handover times and targets. Both engines read the same arrays, so they
can only differ in how they advance time and queue work — which the
equivalence test checks.

The clock is integer nanoseconds (``traces.NS`` per second): every duration is
rounded once, here or by the shared helpers ``transfer_ns`` / ``half_rtt_ns``,
so sums are exact and the two engines agree bit for bit.

Links change at the scenario's trace points (device group links and backhaul
links): the horizon is cut into *link epochs* and each link's bandwidth, RTT
and loss are tabulated per epoch (``LinkSpec.at``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeintel.limits import ensure_fits
from edgeintel.network import TIERS
from edgeintel.offloading.costs import (
    Breakdown,
    LinkState,
    OffloadObjective,
    Power,
    breakdown,
    device_energy_j,
)
from edgeintel.offloading.placement import (
    Option,
)
from edgeintel.sim.plan import initial_plan
from edgeintel.sim.settings import ResolvedSimSettings, SimSettings
from edgeintel.sim.traces import NS, DeviceTraces, sample_traces
from edgeintel.sim.workload import FIELDS, GENERIC

if TYPE_CHECKING:
    from edgeintel.scenario import Scenario

__all__ = [
    "BYTES_PER_DEVICE",
    "BYTES_PER_TASK",
    "EV_HANDOVER",
    "EV_ROUND",
    "EV_SAMPLE",
    "EV_TASK",
    "EV_TRACE",
    "SLOTS",
    "SimModel",
    "build_model",
    "d2d_helpers",
    "half_rtt_ns",
    "memory_estimate_bytes",
    "transfer_ns",
]

# exogenous event kinds, in the order they are handled at equal times
EV_TRACE, EV_HANDOVER, EV_ROUND, EV_SAMPLE, EV_TASK = 0, 1, 2, 3, 4
SLOTS = ("local", "edge", "cloud", "d2d")
"""Placement slots: the action space of a decision (an index into this tuple); ``d2d``: the
device's D2D helper (a neighbour attached to the same node) when the scenario declares a D2D
link (``settings.offloading.d2d``)."""

BYTES_PER_TASK = 100
"""Peak bytes per expected task: drawn arrays, sort temporaries and the per-task records."""
ALERT_RATE = 0.01
"""Share of an alerting kind's readings that are alerts when ``alert_rate`` is unset."""
BYTES_PER_DEVICE = 3000
"""Bytes per device: traces, per-device state and its offloading policy object."""


def transfer_ns(n_bytes: int, mbps: float) -> int:
    """Nanoseconds to serialise ``n_bytes`` at ``mbps`` Mbit/s, rounded up (8000 n / mbps)."""
    return math.ceil(8000.0 * n_bytes / mbps)


def half_rtt_ns(rtt_ms: float) -> int:
    """One-way propagation, half a round trip, in ns (rounded)."""
    return round(rtt_ms * 500_000.0)


def memory_estimate_bytes(devices: int, expected_tasks: float) -> int:
    """Peak memory the model and a run need (bytes), estimated before allocating."""
    return int(BYTES_PER_TASK * expected_tasks + BYTES_PER_DEVICE * devices + 64 * 2**20)


@dataclass
class SimModel:
    """A compiled fleet: infrastructure, devices, link epochs and every exogenous draw.

    Server index ``e < E`` is edge server ``edge_names[e]`` (with its cell and its
    backhaul path to the cloud); index ``E`` is the cloud. A device's ``home`` is
    the server it attaches to (``E``: straight to the cloud, no cell, no cache).
    """

    settings: ResolvedSimSettings
    seed: int
    horizon_ns: int
    objective: OffloadObjective
    latency_weight: float
    hysteresis: float
    # infrastructure
    edge_names: list[str]
    edge_kinds: list[str]
    cloud_name: str
    server_speed: list[float]
    server_workers: list[int]
    server_svc_ns: list[int]
    cell_mbps: list[float]
    # link epochs: epoch k holds from epoch_ns[k]
    epoch_ns: np.ndarray
    group_bw: np.ndarray  # (G, K) Mbit/s
    group_rtt: np.ndarray  # (G, K) ms
    group_loss: np.ndarray  # (G, K)
    bh_bw: np.ndarray  # (E, K) bottleneck Mbit/s edge -> cloud (0 = outage)
    bh_rtt: np.ndarray  # (E, K) summed RTT ms
    # devices
    group_names: list[str]
    dev_group: np.ndarray
    dev_speed: np.ndarray
    dev_power: np.ndarray  # (n, 3) W: compute, tx, idle
    dev_battery_uj: np.ndarray
    home: np.ndarray
    traces: DeviceTraces
    # tasks, sorted by (time, device)
    task_t: np.ndarray
    task_dev: np.ndarray
    task_skip: np.ndarray
    task_key: np.ndarray
    task_u: np.ndarray
    offered_tasks: int  # before removing those of switched-off devices
    # handovers: time, device, draw in [0, 1) picking the new station among the others
    ho_t: np.ndarray
    ho_dev: np.ndarray
    ho_u: np.ndarray
    round_t: np.ndarray
    sample_t: np.ndarray
    # the initial plan: a slot per device group, and the placement's own record
    initial_slot: list[int]
    initial_plan: dict[str, Any] = field(default_factory=dict)
    # per device group, the slots the plan found over capacity for the whole group
    initial_blocked: list[tuple[int, ...]] = field(default_factory=list)
    # per-task protocol overhead of an offload (ns), drawn when request_overhead_ms > 0
    task_overhead_ns: np.ndarray | None = None
    # D2D: each device's helper (-1: none) and the D2D link (Mbit/s, RTT ms), when declared
    helper: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    d2d: tuple[float, float] | None = None
    # the scenario's task kind; per task, whether it is an alert (empty: the kind raises none)
    task_kind: str = "classification"
    task_alert: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    alerts: dict[str, Any] = field(default_factory=dict)
    # task_ms, input_bytes, result_bytes, skip_probability: {"value", "source"} each
    workload: dict[str, dict[str, Any]] = field(default_factory=dict)
    _local: dict[int, tuple[Power, tuple[float, float], Option]] = field(
        default_factory=dict, repr=False, compare=False
    )

    @property
    def num_devices(self) -> int:
        return int(self.dev_group.shape[0])

    @property
    def num_tasks(self) -> int:
        return int(self.task_t.shape[0])

    @property
    def num_edges(self) -> int:
        return len(self.edge_names)

    def server_name(self, s: int) -> str:
        return self.cloud_name if s == self.num_edges else self.edge_names[s]

    def exogenous(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every exogenous event as (time ns, kind, index), sorted by time, kind, index; tasks
        the filter skips end at arrival and are left out (their records say so already)."""
        kept = np.flatnonzero(~self.task_skip)
        parts_t = [self.epoch_ns[1:], self.ho_t, self.round_t, self.sample_t, self.task_t[kept]]
        kinds = [EV_TRACE, EV_HANDOVER, EV_ROUND, EV_SAMPLE, EV_TASK]
        idx = [
            np.arange(1, self.epoch_ns.size, dtype=np.int64),
            np.arange(self.ho_t.size, dtype=np.int64),
            np.arange(self.round_t.size, dtype=np.int64),
            np.arange(self.sample_t.size, dtype=np.int64),
            kept.astype(np.int64),
        ]
        t = np.concatenate(parts_t).astype(np.int64)
        k = np.concatenate(
            [np.full(p.size, kd, dtype=np.int8) for p, kd in zip(parts_t, kinds, strict=True)]
        )
        a = np.concatenate(idx)
        order = np.lexsort((a, k, t))
        return t[order], k[order], a[order]

    # ----------------------------------------------------------------- costs
    def options(
        self,
        d: int,
        attach: int,
        epoch: int,
        q_edge: int,
        q_cloud: int,
    ) -> tuple[Option | None, ...]:
        """Device ``d``'s options in slot order (local, edge, cloud, d2d) under the link epoch,
        costed by the offloading cost model; the queue estimate is the waiting requests times one
        task's service time over the workers. ``None``: that slot is unreachable now."""
        s = self.settings
        e_n = self.num_edges
        g = int(self.dev_group[d])
        cached = self._local.get(d)
        if cached is None:  # local execution does not change: cost it once per device
            pc, ptx, pidle = (float(v) for v in self.dev_power[d])
            power = Power(pc, ptx, pidle)
            local = Breakdown(device_ms=s.task_ms / float(self.dev_speed[d]))
            ref = (max(local.latency_ms, 1e-9), max(device_energy_j(local, power), 1e-12))
            cached = self._local[d] = (
                power,
                ref,
                self._option("local", "local", None, local, power, ref, 0.0),
            )
        power, ref, local_opt = cached
        opts: list[Option | None] = [local_opt]
        bw = float(self.group_bw[g, epoch]) * self.dev_bw_factor(d)
        rtt = float(self.group_rtt[g, epoch])
        edge_opt: Option | None = None
        cloud_opt: Option | None = None
        if bw > 0:
            if attach < e_n:
                up = min(bw, self.cell_mbps[attach])
                srv_ms = s.task_ms / self.server_speed[attach]
                q_ms = q_edge * srv_ms / self.server_workers[attach]
                b = breakdown(0.0, s.input_bytes, s.result_bytes, srv_ms, LinkState(up, rtt), q_ms)
                name = self.edge_names[attach]
                edge_opt = self._option(f"d2e:{name}", "d2e", name, b, power, ref, srv_ms)
                bhw = float(self.bh_bw[attach, epoch])
                path = (min(up, bhw), rtt + float(self.bh_rtt[attach, epoch])) if bhw > 0 else None
            else:
                path = (bw, rtt)
            if path is not None:
                srv_ms = s.task_ms / self.server_speed[e_n]
                q_ms = q_cloud * srv_ms / self.server_workers[e_n]
                b = breakdown(0.0, s.input_bytes, s.result_bytes, srv_ms, LinkState(*path), q_ms)
                cloud_opt = self._option(
                    f"d2c:{self.cloud_name}", "d2c", self.cloud_name, b, power, ref, srv_ms
                )
        d2d_opt: Option | None = None
        h = int(self.helper[d]) if self.helper.size else -1
        if h >= 0 and self.d2d is not None:
            srv_ms = s.task_ms / float(self.dev_speed[h])
            b = breakdown(0.0, s.input_bytes, s.result_bytes, srv_ms, LinkState(*self.d2d))
            d2d_opt = self._option(
                f"d2d:{self.device_name(h)}", "d2d", self.device_name(h), b, power, ref, srv_ms
            )
        opts += [edge_opt, cloud_opt, d2d_opt]
        return tuple(opts)

    def device_name(self, d: int) -> str:
        """A simulated device's name: its group and index (``phone#12``)."""
        return f"{self.group_names[int(self.dev_group[d])]}#{d}"

    def _option(
        self,
        label: str,
        tier: str,
        target: str | None,
        b: Breakdown,
        power: Power,
        ref: tuple[float, float],
        server_ms: float,
    ) -> Option:
        load = (("self", b.device_ms),) if tier == "local" else ()
        return Option.costed(
            label, tier, target, b, power, self.objective, self.latency_weight, ref, server_ms, load
        )

    def dev_bw_factor(self, d: int) -> float:
        return float(self.traces.bandwidth_factor[d])

    def tiers(self) -> tuple[str, ...]:
        return TIERS


def _link_table(specs: list[Any], epochs: np.ndarray) -> tuple[np.ndarray, ...]:
    bw = np.zeros((len(specs), epochs.size))
    rtt = np.zeros_like(bw)
    loss = np.zeros_like(bw)
    for i, spec in enumerate(specs):
        for k, t in enumerate(epochs):
            bw[i, k], rtt[i, k], loss[i, k] = spec.at(float(t) / NS)
    return bw, rtt, loss


def task_alerts(sc: Scenario, s: SimSettings, seed: int, m: int) -> dict[str, Any]:
    """Which of ``m`` tasks are alerts, for a task kind that raises them (``TaskKind.urgent``
    overridden: anomaly): each with probability ``s.alert_rate`` (default ``ALERT_RATE``), from
    its own stream so the other draws do not move; ``{"rate", "source", "mask"}``."""
    from edgeintel.tasks import TaskKind

    kind = sc.task.task_kind()
    if type(kind).urgent is TaskKind.urgent:
        return {"rate": 0.0, "source": f"{sc.task.kind} raises no alerts"}
    rate = ALERT_RATE if s.alert_rate is None else s.alert_rate
    source = "set" if s.alert_rate is not None else "generic default (1% of readings)"
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xA1E7]))
    return {"rate": rate, "source": source, "mask": rng.random(m) < rate}


def d2d_helpers(home: np.ndarray) -> np.ndarray:
    """Each device's D2D helper: the next device attached to the same node (cyclically, in
    index order, as the planner's first neighbour); -1 alone at its node."""
    n = home.size
    order = np.lexsort((np.arange(n), home))
    h = home[order]
    nxt = np.roll(order, -1)
    start = np.flatnonzero(np.r_[True, h[1:] != h[:-1]])  # first of each node's run
    end = np.r_[start[1:], n] - 1
    nxt[end] = order[start]  # the last of a run wraps to its first
    out = np.full(n, -1, dtype=np.int64)
    out[order] = nxt
    out[out == np.arange(n)] = -1  # alone at its node
    return out


def _arrivals(
    n: int, mean: float, horizon: int, traces: DeviceTraces, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, int]:
    """Task arrivals sorted by (time ns, device): Poisson counts of ``mean`` per device, uniform
    times, those of switched-off devices removed; and the count offered before removal.

    Sorted as one int64 key ``t x n + device`` in place where it fits (a tie is the same
    time and device, so any order of ties is the same records), else by ``lexsort``."""
    t_dev = np.repeat(np.arange(n, dtype=np.int32), rng.poisson(mean, n))
    u = rng.random(t_dev.size)
    u *= horizon
    t_t = u.astype(np.int64)
    del u
    offered = int(t_t.size)
    if traces.toggle_ns.size or not traces.start_on.all():
        on = traces.available(t_dev, t_t)
        t_dev, t_t = t_dev[on], t_t[on]
    if (horizon + 1) * max(n, 1) < 2**62:
        key = t_t
        key *= n
        key += t_dev
        del t_dev
        key.sort()
        t_dev = (key % n).astype(np.int32)
        key //= n
        return t_dev, key, offered
    order = np.lexsort((t_dev, t_t))
    return t_dev[order], t_t[order], offered


def build_model(
    sc: Scenario, settings: SimSettings | None = None, seed: int | None = None
) -> SimModel:
    """Compile ``sc`` with ``settings`` (default: ``sc.settings.sim`` or the defaults).

    Raises ``ConfigError`` when the estimated memory exceeds what is available (the
    estimate and the limit in the message), before anything large is allocated.
    """
    given = settings or sc.settings.sim or SimSettings()
    sources = {
        k: "set in the simulator's settings" for k in FIELDS if getattr(given, k) is not None
    }
    unset = {k: GENERIC[k] for k in FIELDS if getattr(given, k) is None}
    # what nothing measured gives: generic figures, said so in the result
    sources |= {k: "generic default (no run or measurement given)" for k in unset}
    s = ResolvedSimSettings.model_validate(given.model_dump() | unset)
    seed = s.seed if seed is None and s.seed is not None else (sc.seed if seed is None else seed)
    off = sc.settings.offloading
    rate = s.task_rate_hz or off.request_rate_hz
    groups = list(sc.devices)
    exact = s.devices is None
    n = sc.num_devices if exact else int(s.devices or 0)
    horizon = round(s.duration_s * NS)
    expected = n * rate * s.duration_s
    # the other per-event arrays count like tasks: on/off switches, handovers, federated
    # rounds' clients; the catalogue's popularity table holds 3 floats per key
    tr, fl = s.traces, s.federated
    events = expected + n * s.duration_s * s.mobility.handover_rate_hz
    if tr.mean_off_s > 0:
        events += 2 * n * s.duration_s / (tr.mean_on_s + tr.mean_off_s)
    if fl.enabled:
        events += s.duration_s / fl.round_interval_s * min(n, fl.clients_per_round)
    ensure_fits(
        memory_estimate_bytes(n, events) + 24 * s.catalog,
        f"sim: {n} devices x {s.duration_s:g} s (about {expected:.3g} tasks)",
        "lower --devices or --duration",
    )
    ss = np.random.SeedSequence([seed, 0x51_4D])
    r_cls, r_tr, r_arr, r_skip, r_key, r_loss, r_ho = (
        np.random.default_rng(c) for c in ss.spawn(7)
    )
    counts = np.array([g.count for g in groups])
    if exact:
        dev_group = np.repeat(np.arange(len(groups)), counts)
    else:
        dev_group = np.sort(r_cls.choice(len(groups), n, p=counts / counts.sum()))
    traces = sample_traces(n, s.traces, horizon, r_tr)
    edges = list(sc.edge_servers)
    e_n = len(edges)
    node_index = {e.name: i for i, e in enumerate(edges)} | {sc.cloud.name: e_n}
    profs = [sc.device_profiles[g.profile] for g in groups]
    speed = np.array([p.compute_speed for p in profs])[dev_group] * traces.speed_factor
    power = np.array([[p.power_compute_w, p.power_tx_w, p.power_idle_w] for p in profs])[dev_group]
    battery = np.round(np.array([p.battery_j for p in profs]) * 1e6).astype(np.int64)[dev_group]
    home = np.array([node_index[g.attach] for g in groups], dtype=np.int64)[dev_group]
    # link epochs
    topo = sc.topology
    changes = {0.0}
    for g in groups:
        changes.update(p.t_s for p in g.link.trace_points())
    for link in sc.links:
        changes.update(p.t_s for p in link.trace_points())
    epoch_s = np.array(sorted(t for t in changes if t < s.duration_s))
    epoch_ns = np.round(epoch_s * NS).astype(np.int64)
    gbw, grtt, gloss = _link_table([g.link for g in groups], epoch_ns)
    bh_bw = np.zeros((e_n, epoch_ns.size))
    bh_rtt = np.zeros_like(bh_bw)
    for i, e in enumerate(edges):
        hops = topo.links_to_cloud(e.name)
        if hops:
            bw, rtt, _ = _link_table(hops, epoch_ns)
            bh_bw[i], bh_rtt[i] = bw.min(axis=0), rtt.sum(axis=0)
        else:
            bh_bw[i] = np.inf
    # tasks: Poisson counts per device, uniform times, minus those of switched-off devices
    t_dev, t_t, offered = _arrivals(n, rate * s.duration_s, horizon, traces, r_arr)
    m = t_t.size
    skip = (r_skip.random(m) < s.skip_probability) if s.filter else np.zeros(m, dtype=bool)
    cdf = np.cumsum(1.0 / np.arange(1, s.catalog + 1) ** s.zipf_alpha)
    cdf /= cdf[-1]
    keys = np.minimum(np.searchsorted(cdf, r_key.random(m)), s.catalog - 1).astype(np.int32)
    alerts = task_alerts(sc, s, seed, m)
    alert = alerts.pop("mask", np.zeros(0, dtype=bool))
    if alert.size:  # the filter never drops an alert (the reading is not steady)
        skip &= ~alert
    u = 1.0 - r_loss.random(m)  # in (0, 1]: log(u) is finite
    # handovers between edge servers
    movable = home < e_n
    rate_ho = s.mobility.handover_rate_hz if e_n >= 2 else 0.0
    ho_n = r_ho.poisson(rate_ho * s.duration_s, n) * movable
    ho_dev = np.repeat(np.arange(n, dtype=np.int64), ho_n)
    ho_t = (r_ho.random(ho_dev.size) * horizon).astype(np.int64)
    o2 = np.lexsort((ho_dev, ho_t))
    ho_dev, ho_t = ho_dev[o2], ho_t[o2]
    ho_u = r_ho.random(ho_dev.size)
    fed = s.federated
    round_t = (
        np.arange(1, int(s.duration_s // fed.round_interval_s) + 1, dtype=np.int64)
        * round(fed.round_interval_s * NS)
        if fed.enabled
        else np.zeros(0, dtype=np.int64)
    )
    round_t = round_t[round_t < horizon]
    sample_t = (np.arange(1, s.series_bins + 1, dtype=np.int64) * horizon) // s.series_bins
    sample_t = np.minimum(sample_t, horizon - 1)
    speeds = [e.compute_speed for e in edges] + [sc.cloud.compute_speed]
    workers = [off.server_workers] * e_n + [off.cloud_workers]
    model = SimModel(
        settings=s,
        seed=seed,
        horizon_ns=horizon,
        objective=OffloadObjective(off.objective),
        latency_weight=off.latency_weight,
        hysteresis=off.hysteresis,
        edge_names=[e.name for e in edges],
        edge_kinds=[str(e.kind) for e in edges],
        cloud_name=sc.cloud.name,
        server_speed=speeds,
        server_workers=workers,
        server_svc_ns=[round(s.task_ms * 1e6 / v) for v in speeds],
        cell_mbps=[
            s.macro_uplink_mbps if str(e.kind) == "macro" else s.micro_uplink_mbps for e in edges
        ],
        epoch_ns=epoch_ns,
        group_bw=gbw,
        group_rtt=grtt,
        group_loss=gloss,
        bh_bw=bh_bw,
        bh_rtt=bh_rtt,
        group_names=[g.name for g in groups],
        dev_group=dev_group,
        dev_speed=speed,
        dev_power=power,
        dev_battery_uj=battery,
        home=home,
        traces=traces,
        task_t=t_t,
        task_dev=t_dev,
        task_skip=skip,
        task_key=keys,
        task_u=u,
        offered_tasks=offered,
        ho_t=ho_t,
        ho_dev=ho_dev,
        ho_u=ho_u,
        round_t=round_t,
        sample_t=sample_t,
        initial_slot=[0] * len(groups),
    )
    model.task_kind = sc.task.kind
    model.alerts = alerts
    model.task_alert = alert
    if s.request_overhead_ms > 0:  # its own stream: the other draws do not move
        r_ovh = np.random.default_rng(np.random.SeedSequence([seed, 0x0E4D]))
        z = r_ovh.standard_normal(m) * s.request_overhead_sigma
        # a draw beyond the horizon ends after the run either way; clipped, it stays an int64
        ovh = np.minimum(s.request_overhead_ms * 1e6 * np.exp(z), float(horizon))
        model.task_overhead_ns = np.round(ovh).astype(np.int64)
    model.workload = {k: {"value": getattr(s, k), "source": sources[k]} for k in FIELDS}
    if off.d2d is not None:
        model.d2d = (off.d2d.bandwidth_mbps, off.d2d.rtt_ms)
        model.helper = d2d_helpers(home)
    model.initial_slot, model.initial_plan, model.initial_blocked = initial_plan(
        sc, model, np.bincount(dev_group, minlength=len(groups)), rate
    )
    return model
