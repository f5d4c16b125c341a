"""The model's state and its event handlers, shared by both engines.

An engine (``core.py``: our heap core; ``reference.py``: SimPy processes) owns
time and the queues — the device CPU, the cell uplink and backhaul FIFOs, the
servers' waiting lines and workers — and calls these handlers at the simulated
times it reaches. What happens at those times (a decision, a cache lookup, a
completion with its energy, a handover, a federated round, a sample for the
plots) is defined once, here.

The model, per task (times in integer ns; see docs/simulator.md):

* arrival: a skipped task (redundancy filter) or one of a flat device is
  recorded and ends; otherwise the device's policy decides a slot (cached until
  the device's next epoch unless ``decisions="task"``);
* local: the device's CPU, FIFO, ``task_ms / speed``; energy ``P_compute x time``,
  drawn at arrival;
* offload: ``attempts`` (1 + geometric retransmissions at the link's loss) of
  ``input_bytes``. The station's cell uplink is shared: it serves transfers one at a
  time in arrival order at the cell's bandwidth (FIFO), and a transfer cannot end
  before the device alone could have sent it at its own bandwidth, so it ends at
  ``max(arrival + attempts x bytes / device bandwidth, cell FIFO finish)``;
  then half the device RTT to the edge server, where the result cache is looked up
  (a hit returns at once). An edge-bound miss joins the edge server's queue; a
  cloud-bound one crosses the station's backhaul FIFO (bottleneck bandwidth of the
  path, then half its RTT) to the cloud's queue. Devices attached to the cloud send
  straight to it. Servers run batches; the result returns over the same hops
  without queueing, is admitted to the station's cache, and the device pays
  ``P_tx x transmit + P_idle x the rest`` of the latency, drawn at completion.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from edgeintel.caching.policies import CachePolicy, make_policy
from edgeintel.network import Exchange, Hop, Traffic
from edgeintel.sim.model import SimModel, half_rtt_ns, transfer_ns
from edgeintel.sim.policy import DecisionPolicy, Observation
from edgeintel.sim.traces import NS

__all__ = [
    "DROP_BATTERY",
    "DROP_OUTAGE",
    "DROP_QUEUE",
    "PENDING",
    "SKIPPED",
    "SimState",
]

PENDING, SKIPPED, DROP_BATTERY, DROP_QUEUE, DROP_OUTAGE = -9, -1, -2, -3, -4
MAX_ATTEMPTS = 16


class SimState:
    """Per-task records, per-device state, caches and counters of one run."""

    def __init__(self, model: SimModel, policy: DecisionPolicy | None) -> None:
        m = self.model = model
        s = self.settings = model.settings
        self.policy = policy
        n, t = m.num_devices, m.num_tasks
        self.E = m.num_edges
        # per-task records
        self.place = np.full(t, PENDING, dtype=np.int8)
        self.place[model.task_skip] = SKIPPED
        self.done = np.full(t, -1, dtype=np.int64)
        self.hit = np.zeros(t, dtype=bool)
        self.energy = np.zeros(t, dtype=np.int64)  # uJ
        self.bs = np.full(t, -1, dtype=np.int16)
        self.attempts = np.zeros(t, dtype=np.int8)
        self.inflight: dict[int, tuple[int, int, int]] = {}  # task -> (tx ns, back ns, tx uJ)
        self.helper_uj: dict[int, int] = {}  # D2D task -> its helper's compute uJ
        self.t_arr = m.task_t
        self.dev_of = m.task_dev
        # per device
        self.attach: list[int] = m.home.tolist()
        self.battery: list[int] = m.dev_battery_uj.tolist()
        self.dev_free: list[int] = [0] * n
        self.version: list[int] = [0] * n
        self.seen_version: list[int] = [-1] * n
        self.seen_epoch: list[int] = [-1] * n
        self.slot: list[int] = [0] * n
        self.local_ns: list[int] = [round(s.task_ms * 1e6 / v) for v in m.dev_speed.tolist()]
        self.pw: list[list[float]] = m.dev_power.tolist()
        self.group: list[int] = m.dev_group.tolist()
        self.bwf: list[float] = m.traces.bandwidth_factor.tolist()
        self.epoch = 0
        self.gbw: list[list[float]] = m.group_bw.tolist()
        self.grtt: list[list[float]] = m.group_rtt.tolist()
        self.gloss: list[list[float]] = m.group_loss.tolist()
        self.bhbw: list[list[float]] = m.bh_bw.tolist()
        self.bhrtt: list[list[float]] = m.bh_rtt.tolist()
        self.cell_mbps = m.cell_mbps
        self.keys = m.task_key
        self.overhead = m.task_overhead_ns
        self.u = m.task_u
        self.per_task = s.decisions == "task"
        self.caches: list[CachePolicy] = [
            make_policy(s.cache_policy, s.cache_entries) for _ in range(self.E)
        ]
        self.follow_n = s.mobility.follow_entries
        self.follow: dict[int, deque[int]] = {}
        self._fq: list[deque[int]] | None = None
        # counters
        self.events = 0
        self.decisions = 0
        self.invalid_actions = 0
        self.handovers = 0
        self.lookups = 0
        self.series: dict[str, list[float]] = {
            k: []
            for k in (
                "t_s",
                "edge_queue",
                "cloud_queue",
                "busy_workers",
                "battery_fraction",
                "handovers",
                "outage_fraction",
                "dead_devices",
            )
        }
        self.rounds: list[dict[str, Any]] = []
        self.traffic = Traffic()
        self.fl_energy_uj = 0
        self.flush_hook: Callable[[], None] | None = None
        self._battery0 = m.dev_battery_uj.astype(np.float64)

    def sync(self) -> None:
        """Write records an engine keeps buffered into the arrays (the fast core buffers them
        per chunk); a no-op for engines that write at once."""
        if self.flush_hook is not None:
            self.flush_hook()

    # ----------------------------------------------------------------- links
    def dev_link(self, d: int) -> tuple[float, float, float]:
        """(bandwidth Mbit/s, RTT ms, loss) of device ``d``'s access link now."""
        g, k = self.group[d], self.epoch
        return self.gbw[g][k] * self.bwf[d], self.grtt[g][k], self.gloss[g][k]

    # ----------------------------------------------------------------- decisions
    def needs_decision(self, d: int) -> bool:
        return (
            self.per_task
            or self.seen_version[d] != self.version[d]
            or self.seen_epoch[d] != self.epoch
        )

    def observe(self, d: int, now: int, q_edge: int, q_cloud: int) -> Observation:
        m = self.model
        a = self.attach[d]
        reason = (
            "first"
            if self.seen_version[d] < 0
            else "handover"
            if self.seen_version[d] != self.version[d]
            else "link"
            if self.seen_epoch[d] != self.epoch
            else "task"
        )
        bw, rtt, loss = self.dev_link(d)
        return Observation(
            t_s=now / NS,
            device=d,
            group=m.group_names[self.group[d]],
            attach=m.server_name(a),
            options=m.options(d, a, self.epoch, q_edge, q_cloud),
            bandwidth_mbps=bw,
            rtt_ms=rtt,
            loss=loss,
            battery_fraction=self.battery[d] / max(1.0, float(self._battery0[d])),
            queues=(q_edge, q_cloud),
            reason=reason,
        )

    def apply(self, d: int, action: Any, obs: Observation) -> int:
        """Record a decision; an action naming an unreachable slot runs locally (counted)."""
        self.decisions += 1
        try:
            slot = int(action)
        except (TypeError, ValueError):
            slot = -1
        if not 0 <= slot < len(obs.options) or obs.options[slot] is None:
            self.invalid_actions += 1
            slot = 0
        self.seen_version[d] = self.version[d]
        self.seen_epoch[d] = self.epoch
        self.slot[d] = slot
        return slot

    # ----------------------------------------------------------------- task handlers
    def skip_or_dead(self, i: int, d: int) -> bool:
        """Record a filtered task or one of a flat device; True when the task ends here."""
        if self.model.task_skip[i]:
            return True  # place already SKIPPED
        if self.battery[d] <= 0:
            self.place[i] = DROP_BATTERY
            return True
        return False

    def local_energy(self, i: int, d: int) -> int:
        svc = self.local_ns[d]
        e = round(self.pw[d][0] * svc / 1000.0)
        self.energy[i] = e
        self.battery[d] -= e
        self.place[i] = 0
        return svc

    def link_consts(self, d: int) -> tuple[int, int, int, int, float, int]:
        """Device ``d``'s send constants now: (cell or -1, ns per upload attempt at the device's
        own bandwidth, ns per attempt at the cell's bandwidth (its share of the cell), half
        RTT ns, log of the loss rate (0: no loss), ns for the result to come back)."""
        bw, rtt, loss = self.dev_link(d)
        c = self.attach[d]
        s = self.settings
        cell = transfer_ns(s.input_bytes, self.cell_mbps[c]) if c < self.E else 0
        if c >= self.E:
            c = -1
        half = half_rtt_ns(rtt)
        tx1 = transfer_ns(s.input_bytes, bw) if bw > 0 else 0
        back = half + (transfer_ns(s.result_bytes, bw) if bw > 0 else 0)
        return c, tx1, cell, half, (math.log(loss) if loss > 0 else 0.0), back

    def d2d_consts(self) -> tuple[int, int, int, int, float, int]:
        """``link_consts`` of the D2D link (no cell, no loss): the same for every device."""
        bw, rtt = self.model.d2d or (0.0, 0.0)
        s = self.settings
        half = half_rtt_ns(rtt)
        return (
            -1,
            transfer_ns(s.input_bytes, bw),
            0,
            half,
            0.0,
            half + transfer_ns(s.result_bytes, bw),
        )

    def d2d_send(self, i: int, d: int) -> tuple[int, int]:
        """Send task ``i`` to device ``d``'s D2D helper: (helper, ns until it reaches it)."""
        _, tx, _, half, _, back = self.d2d_consts()
        self.attempts[i] = 1
        self.place[i] = 3
        self.inflight[i] = (tx, back, round(self.pw[d][1] * tx / 1000.0))
        return int(self.model.helper[d]), tx + half

    def at_helper(self, i: int, h: int) -> int:
        """Task ``i`` reaches helper ``h``: its compute ns (drawn from the helper's battery now),
        or -1 when the helper is flat (the task is dropped)."""
        self.events += 1
        if self.battery[h] <= 0:
            self.drop(i, DROP_BATTERY)
            return -1
        svc = self.local_ns[h]
        e = round(self.pw[h][0] * svc / 1000.0)
        self.battery[h] -= e
        self.helper_uj[i] = e
        return svc

    def offload(self, i: int, d: int, slot: int) -> tuple[int, int, int, int]:
        """Start an offload: (cell index or -1, transmit ns at the device's rate, ns of the
        cell's capacity it takes, half device RTT ns). The way back over the device's link is
        costed with the link as it is now, when the task is sent."""
        c, tx1, cell1, half, lnloss, back = self.link_consts(d)
        att = 1
        if lnloss:
            att = min(MAX_ATTEMPTS, 1 + int(math.log(self.u[i]) / lnloss))
        tx = att * tx1
        self.attempts[i] = att
        self.place[i] = slot
        self.bs[i] = c
        self.inflight[i] = (tx, back, round(self.pw[d][1] * tx / 1000.0))
        return c, tx, att * cell1, half

    def at_edge(self, i: int, now: int) -> tuple[int, int, int]:
        """A request reaches its station: (next server, backhaul ns, half backhaul RTT ns);
        next server -1: answered (cache hit) or dropped (backhaul outage)."""
        self.events += 1
        c = int(self.bs[i])
        key = int(self.keys[i])
        self.lookups += 1
        if self.caches[c].lookup(key):
            self.hit[i] = True
            self.complete(i, now)
            return -1, 0, 0
        if self.place[i] == 1:
            return c, 0, 0
        bw = self.bhbw[c][self.epoch]
        if bw <= 0:
            self.drop(i, DROP_OUTAGE)
            return -1, 0, 0
        svc = transfer_ns(self.settings.input_bytes, bw) if math.isfinite(bw) else 0
        return self.E, svc, half_rtt_ns(self.bhrtt[c][self.epoch])

    def drop(self, i: int, code: int) -> None:
        d = int(self.dev_of[i])
        _, _, e = self.inflight.pop(i)
        self.place[i] = code
        self.energy[i] = e
        self.battery[d] -= e

    def complete(self, i: int, now: int) -> None:
        """The result of task ``i`` leaves its server (or the cache) at ``now``: return it
        (the backhaul as it is now, the device link as it was when sent), charge the device,
        and admit the result to the station's cache."""
        d = int(self.dev_of[i])
        tx, back, e_tx = self.inflight.pop(i)
        c = int(self.bs[i])
        hit = bool(self.hit[i])
        if self.place[i] == 2 and c >= 0 and not hit:
            back += self.bh_back(c)
        if self.overhead is not None:  # calibrated protocol overhead of the exchange
            back += int(self.overhead[i])
        done = now + back
        self.done[i] = done
        e = e_tx + round(self.pw[d][2] * (done - int(self.t_arr[i]) - tx) / 1000.0)
        self.energy[i] = e + self.helper_uj.pop(i, 0)  # a D2D helper's compute counts too
        self.battery[d] -= e
        if c >= 0:
            key = int(self.keys[i])
            cache = self.caches[c]
            if not hit and key not in cache:
                cache.admit(key)
            if self.follow_n:
                self.follow_queue(d).append(key)

    def follow_queue(self, d: int) -> deque[int]:
        """Device ``d``'s most recent result keys (they follow it on a handover)."""
        if self._fq is not None:
            return self._fq[d]
        q = self.follow.get(d)
        if q is None:
            q = self.follow[d] = deque(maxlen=self.follow_n)
        return q

    def follow_queues(self) -> list[deque[int]] | None:
        """One queue per device, made up front (the fast core's layout); None when nothing
        follows devices (no handovers or ``follow_entries`` 0)."""
        if not self.follow_n or self.model.ho_t.size == 0:
            return None
        self._fq = [deque(maxlen=self.follow_n) for _ in range(self.model.num_devices)]
        return self._fq

    def bh_back(self, c: int) -> int:
        """ns for a result to come back from the cloud over station ``c``'s backhaul now."""
        bhw = self.bhbw[c][self.epoch]
        back = half_rtt_ns(self.bhrtt[c][self.epoch])
        if bhw > 0 and math.isfinite(bhw):
            back += transfer_ns(self.settings.result_bytes, bhw)
        return back

    def batch_ns(self, server: int, size: int) -> int:
        return round(
            self.model.server_svc_ns[server] * (1.0 + (size - 1) * self.settings.batch_marginal)
        )

    # ----------------------------------------------------------------- exogenous handlers
    def trace_step(self, k: int) -> None:
        self.events += 1
        self.epoch = k

    def handover(self, j: int) -> None:
        """Device ``ho_dev[j]`` moves to another station; its plan and recent results follow."""
        self.events += 1
        m = self.model
        d = int(m.ho_dev[j])
        old = self.attach[d]
        if old >= self.E or self.E < 2:
            return
        new = (old + 1 + int(m.ho_u[j] * (self.E - 1))) % self.E
        self.attach[d] = new
        self.version[d] += 1
        self.handovers += 1
        q = self._fq[d] if self._fq is not None else self.follow.get(d)
        if q:
            cache = self.caches[new]
            for key in q:
                if key not in cache:
                    cache.admit(key)

    def sample(self, now: int, edge_q: int, cloud_q: int, busy: int) -> None:
        self.events += 1
        m = self.model
        bat = np.asarray(self.battery, dtype=np.float64)
        k = self.epoch
        dev_down = m.group_bw[m.dev_group, k] <= 0
        att = np.asarray(self.attach)
        bh_down = np.zeros(m.num_devices, dtype=bool)
        on_edge = att < self.E
        if self.E:
            bh_down[on_edge] = m.bh_bw[att[on_edge], k] <= 0
        ser = self.series
        ser["t_s"].append(now / NS)
        ser["edge_queue"].append(edge_q)
        ser["cloud_queue"].append(cloud_q)
        ser["busy_workers"].append(busy)
        ser["battery_fraction"].append(float(np.mean(np.clip(bat / self._battery0, 0, 1))))
        ser["handovers"].append(self.handovers)
        ser["outage_fraction"].append(float(np.mean(dev_down | bh_down)))
        ser["dead_devices"].append(int(np.sum(bat <= 0)))

    def fl_round(self, k: int, now: int) -> None:
        """One federated round at ``now``: clients drawn among alive, switched-on devices;
        each exchange timed by ``network.Exchange`` over its access link and backhaul."""
        self.events += 1
        m = self.model
        fed = self.settings.federated
        rng = np.random.default_rng([m.seed, 0xF1, k])
        bat = np.asarray(self.battery)
        alive = np.flatnonzero(bat > 0)
        on = alive[m.traces.available(alive, np.full(alive.size, now, dtype=np.int64))]
        take = min(fed.clients_per_round, on.size)
        chosen = np.sort(rng.choice(on, size=take, replace=False)) if take else on[:0]
        done, stragglers, dropouts, times = 0, 0, 0, []
        for d in chosen.tolist():
            bw, rtt, _ = self.dev_link(d)
            a = self.attach[d]
            backhaul: tuple[Hop, ...] = ()
            if a < self.E:
                backhaul = (Hop(self.bhbw[a][self.epoch], self.bhrtt[a][self.epoch]),)
            compute_s = fed.local_compute_ms / 1000.0 / float(m.dev_speed[d])
            if bw <= 0 or any(h.bandwidth_mbps <= 0 for h in backhaul):
                dropouts += 1
                continue
            ex = Exchange(fed.model_bytes, fed.model_bytes, Hop(bw, rtt), backhaul, compute_s)
            dur = ex.time_s
            pc, ptx, _ = self.pw[d]
            e = round((pc * compute_s + ptx * ex.upload_s) * 1e6)
            self.traffic.model_to_devices(fed.model_bytes, 1)
            self.traffic.model_to_edges(fed.model_bytes, [backhaul] if backhaul else [])
            if now + round(dur * NS) >= m.traces.next_toggle_ns(d, now) or self.battery[d] < e:
                dropouts += 1
                spent = min(e, max(self.battery[d], 0))
                self.battery[d] -= spent
                self.fl_energy_uj += spent
                continue
            self.battery[d] -= e
            self.fl_energy_uj += e
            self.traffic.update_from_device(fed.model_bytes, backhaul)
            times.append(dur)
            if dur > fed.deadline_s:
                stragglers += 1
            else:
                done += 1
        self.rounds.append(
            {
                "round": k + 1,
                "t_s": now / NS,
                "clients": int(take),
                "aggregated": done,
                "stragglers": stragglers,
                "dropouts": dropouts,
                "duration_s": round(min(max(times, default=0.0), fed.deadline_s), 6),
            }
        )
