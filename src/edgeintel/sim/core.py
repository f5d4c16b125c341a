"""The fast engine: one heap of endogenous events merged with the pre-sorted exogenous stream.

Exogenous events (task arrivals, handovers, link-trace steps, federated rounds,
samples) are drawn and sorted up front by numpy (``SimModel.exogenous``) and
read in chunks, never pushed on the heap. Only what depends on contention is
an event: a request reaching its station, reaching a server, and a batch
finishing. FIFO resources with one server at a time (a device's CPU, a cell
uplink, a backhaul) need no events at all: their finish time is
``max(arrival, free) + service`` (Lindley's recursion), computed when the
request joins, in arrival order — the order SimPy's FIFO ``Resource`` grants
(a cell transfer also waits for the device's own sending time).

``run_core`` is a generator: with a policy it never yields; without one it
yields an ``Observation`` at each decision and expects the action to be sent
back (``Simulation.next_decision`` / ``decide`` drive it).
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Generator
from math import ceil
from typing import Any

import numpy as np

from edgeintel.sim.model import EV_HANDOVER, EV_ROUND, EV_SAMPLE, EV_TASK, EV_TRACE
from edgeintel.sim.policy import Observation
from edgeintel.sim.state import (
    DROP_BATTERY,
    DROP_OUTAGE,
    DROP_QUEUE,
    MAX_ATTEMPTS,
    SimState,
)

__all__ = ["run_core"]

_AT_EDGE, _AT_SERVER, _BATCH_DONE, _AT_HELPER, _D2D_DONE = 0, 1, 2, 3, 4
_CHUNK = 1 << 16


def run_core(
    state: SimState, progress: Callable[[float], None] | None = None
) -> Generator[Observation, int, None]:
    """Run the model to its horizon, updating ``state``; yields decisions when it has no policy.

    The handlers of ``state.py`` are inlined here (the SimPy reference calls them), and
    per-task records are buffered in lists and written to the arrays once per chunk.
    """
    m = state.model
    s = state.settings
    e_n = state.E
    n_srv = e_n + 1
    ex_t, ex_k, ex_a = m.exogenous()
    total = int(ex_t.size)
    heap: list[tuple[int, int, int, Any]] = []
    push, pop = heapq.heappush, heapq.heappop
    seq = 0
    queues: list[deque[list[int]]] = [deque() for _ in range(n_srv)]
    idle = list(m.server_workers)
    workers = m.server_workers
    cell_free = [0] * e_n
    bh_free = [0] * e_n
    dev_free = state.dev_free
    battery = state.battery
    attach = state.attach
    local_ns = state.local_ns
    pw = state.pw
    per_task = state.per_task
    caches = state.caches
    fq = state.follow_queues()
    bhbw, bhrtt = state.bhbw, state.bhrtt
    in_b, res_b = s.input_bytes, s.result_bytes
    max_batch = s.max_batch
    limit = s.queue_limit
    marginal = s.batch_marginal
    svc_ns = m.server_svc_ns
    batch_ns = [
        [0] + [round(svc_ns[v] * (1.0 + (k - 1) * marginal)) for k in range(1, max_batch + 1)]
        for v in range(n_srv)
    ]
    policy = state.policy
    helper = m.helper.tolist()
    alerts = m.task_alert if m.task_alert.size else None
    ovh = None if m.task_overhead_ns is None else m.task_overhead_ns.tolist()
    log = math.log
    isfinite = math.isfinite
    # per device: (stamp, slot, SimState.link_consts..., loss, P_tx, local ns, local uJ), made
    # at each decision; stale when the stamp moves on (a link-trace step) or None (a handover)
    plan: list[tuple[Any, ...] | None] = [None] * m.num_devices
    gstamp = 0
    ho_dev = m.ho_dev
    # record buffers, flushed per chunk
    loc_i: list[int] = []
    loc_done: list[int] = []
    loc_e: list[int] = []
    off_i: list[int] = []
    att_i: list[int] = []  # retransmitted tasks only (attempts > 1)
    att_v: list[int] = []
    off_bs: list[int] = []
    off_slot: list[int] = []
    cmp_i: list[int] = []
    cmp_done: list[int] = []
    cmp_e: list[int] = []
    hit_i: list[int] = []
    drp_i: list[int] = []
    drp_code: list[int] = []
    drp_e: list[int] = []
    dead_i: list[int] = []
    n_ev = 0  # events
    n_look = 0  # cache lookups

    def flush() -> None:
        place, done, energy = state.place, state.done, state.energy
        if loc_i:
            idx = np.array(loc_i, dtype=np.int64)
            place[idx] = 0
            done[idx] = loc_done
            energy[idx] = loc_e
        if off_i:
            idx = np.array(off_i, dtype=np.int64)
            place[idx] = off_slot
            state.attempts[idx] = 1
            state.bs[idx] = off_bs
        if att_i:
            state.attempts[np.array(att_i, dtype=np.int64)] = att_v
        if cmp_i:
            idx = np.array(cmp_i, dtype=np.int64)
            done[idx] = cmp_done
            energy[idx] = cmp_e
        if hit_i:
            state.hit[np.array(hit_i, dtype=np.int64)] = True
        if drp_i:
            idx = np.array(drp_i, dtype=np.int64)
            place[idx] = drp_code
            energy[idx] = drp_e
        if dead_i:
            place[np.array(dead_i, dtype=np.int64)] = DROP_BATTERY
        for buf in (loc_i, loc_done, loc_e, off_i, att_i, att_v, off_bs, off_slot, cmp_i,
                    cmp_done, cmp_e, hit_i, drp_i, drp_code, drp_e, dead_i):  # fmt: skip
            buf.clear()

    state.flush_hook = flush  # a caller stepping through decisions reads current records

    def to_server(f: list[Any], srv: int, now: int) -> None:
        nonlocal seq, n_ev
        n_ev += 1
        if idle[srv] > 0:
            idle[srv] -= 1
            seq += 1
            push(heap, (now + batch_ns[srv][1], seq, _BATCH_DONE, (srv, [f])))
        elif len(queues[srv]) >= limit:
            battery[f[1]] -= f[7]
            drp_i.append(f[0])
            drp_code.append(DROP_QUEUE)
            drp_e.append(f[7])
        elif alerts is not None and alerts[f[0]]:  # ahead of every waiting non-alert
            q = queues[srv]
            pos = 0
            while pos < len(q) and alerts[q[pos][0]]:
                pos += 1
            q.insert(pos, f)
        else:
            queues[srv].append(f)

    def endogenous(now: int, kind: int, x: Any) -> None:
        nonlocal seq, n_ev, n_look
        if kind == _BATCH_DONE:
            n_ev += 1
            srv, items = x
            ep = state.epoch
            for f in items:
                c = f[2]
                d = f[1]
                back = f[6]
                if c >= 0 and f[8] == 2:
                    bw = bhbw[c][ep]
                    back += round(bhrtt[c][ep] * 500_000.0)
                    if bw > 0 and isfinite(bw):
                        back += ceil(8000.0 * res_b / bw)
                done = now + back
                e = f[7] + round(pw[d][2] * (done - f[4] - f[5]) / 1000.0)
                battery[d] -= e
                cmp_i.append(f[0])
                cmp_done.append(done)
                cmp_e.append(e)
                if c >= 0:
                    cache = caches[c]
                    if f[3] not in cache:
                        cache.admit(f[3])
                    if fq is not None:
                        fq[d].append(f[3])
            q = queues[srv]
            if q:
                k = min(max_batch, len(q))
                take = [q.popleft() for _ in range(k)]
                seq += 1
                push(heap, (now + batch_ns[srv][k], seq, _BATCH_DONE, (srv, take)))
            else:
                idle[srv] += 1
        elif kind == _AT_EDGE:
            c = x[2]
            n_ev += 1
            n_look += 1
            if caches[c].lookup(x[3]):
                d = x[1]
                done = now + x[6]
                e = x[7] + round(pw[d][2] * (done - x[4] - x[5]) / 1000.0)
                battery[d] -= e
                hit_i.append(x[0])
                cmp_i.append(x[0])
                cmp_done.append(done)
                cmp_e.append(e)
                if fq is not None:
                    fq[d].append(x[3])
                return
            if x[8] == 1:
                to_server(x, c, now)
                return
            ep = state.epoch
            bw = bhbw[c][ep]
            if bw <= 0:
                battery[x[1]] -= x[7]
                drp_i.append(x[0])
                drp_code.append(DROP_OUTAGE)
                drp_e.append(x[7])
                return
            svc = ceil(8000.0 * in_b / bw) if isfinite(bw) else 0
            fin = max(now, bh_free[c]) + svc
            bh_free[c] = fin
            seq += 1
            push(heap, (fin + round(bhrtt[c][ep] * 500_000.0), seq, _AT_SERVER, x))
        elif kind == _AT_SERVER:  # the cloud
            to_server(x, e_n, now)
        elif kind == _AT_HELPER:  # a D2D task reaches its helper's CPU (FIFO, Lindley)
            n_ev += 1
            h = helper[x[1]]
            if battery[h] <= 0:
                battery[x[1]] -= x[7]
                drp_i.append(x[0])
                drp_code.append(DROP_BATTERY)
                drp_e.append(x[7])
                return
            svc = local_ns[h]
            e = round(pw[h][0] * svc / 1000.0)  # the helper's compute, drawn as the task arrives
            battery[h] -= e
            fin = max(now, dev_free[h]) + svc
            dev_free[h] = fin
            seq += 1
            push(heap, (fin, seq, _D2D_DONE, [*x, e]))
        else:  # _D2D_DONE: the result comes back over the D2D link
            d = x[1]
            done = now + x[6]
            e = x[7] + round(pw[d][2] * (done - x[4] - x[5]) / 1000.0)
            battery[d] -= e
            cmp_i.append(x[0])
            cmp_done.append(done)
            cmp_e.append(e + x[9])

    pos = 0
    while pos < total:
        hi = min(total, pos + _CHUNK)
        ct = ex_t[pos:hi].tolist()
        ck = ex_k[pos:hi].tolist()
        ca = ex_a[pos:hi].tolist()
        tasks = ex_a[pos:hi][ex_k[pos:hi] == EV_TASK]
        devs = m.task_dev[tasks].tolist()
        keys = m.task_key[tasks].tolist()
        us = m.task_u[tasks].tolist()
        di = -1
        if progress is not None:
            progress(min(1.0, ct[0] / m.horizon_ns))
        for j in range(hi - pos):
            t = ct[j]
            while heap and heap[0][0] < t:
                now, _, ek, x = pop(heap)
                if ek != _AT_EDGE or x[8] != 1:
                    endogenous(now, ek, x)
                    continue
                # the common case inline: an edge-bound request reaches its station
                c = x[2]
                n_ev += 1
                n_look += 1
                if caches[c].lookup(x[3]):
                    d = x[1]
                    done = now + x[6]
                    e = x[7] + round(pw[d][2] * (done - x[4] - x[5]) / 1000.0)
                    battery[d] -= e
                    hit_i.append(x[0])
                    cmp_i.append(x[0])
                    cmp_done.append(done)
                    cmp_e.append(e)
                    if fq is not None:
                        fq[d].append(x[3])
                elif idle[c] > 0:
                    n_ev += 1
                    idle[c] -= 1
                    seq += 1
                    push(heap, (now + batch_ns[c][1], seq, _BATCH_DONE, (c, [x])))
                else:
                    to_server(x, c, now)
            kind = ck[j]
            if kind == EV_TASK:
                di += 1
                n_ev += 1
                i = ca[j]
                d = devs[di]
                if battery[d] <= 0:
                    dead_i.append(i)
                    continue
                p = plan[d]
                if per_task or p is None or p[0] != gstamp:
                    a = attach[d]
                    obs = state.observe(d, t, len(queues[a]) if a < e_n else 0, len(queues[e_n]))
                    action = policy.decide(obs) if policy is not None else (yield obs)
                    slot = state.apply(d, action, obs)
                    pc, ptx, _ = pw[d]
                    svc = local_ns[d]
                    # the device's plan and send constants until its next epoch, in one tuple
                    p = plan[d] = (
                        gstamp,
                        slot,
                        *(state.d2d_consts() if slot == 3 else state.link_consts(d)),
                        state.dev_link(d)[2],
                        ptx,
                        svc,
                        round(pc * svc / 1000.0),
                    )
                _, slot, c, tx1, cell1, half, lnloss, back, loss, ptx, svc, e = p
                if slot == 0:
                    battery[d] -= e
                    fin = max(t, dev_free[d]) + svc
                    dev_free[d] = fin
                    loc_i.append(i)
                    loc_done.append(fin)
                    loc_e.append(e)
                    continue
                att = 1
                if lnloss and us[di] <= loss:  # else log(u) / log(loss) < 1: one attempt
                    att = min(MAX_ATTEMPTS, 1 + int(log(us[di]) / lnloss))
                    if att > 1:
                        att_i.append(i)
                        att_v.append(att)
                tx = att * tx1
                off_i.append(i)
                off_bs.append(c)
                off_slot.append(slot)
                if ovh is not None:  # calibrated per-request protocol overhead
                    f = [i, d, c, keys[di], t, tx, back + ovh[i], round(ptx * tx / 1000.0),
                         slot]  # fmt: skip
                else:
                    f = [i, d, c, keys[di], t, tx, back, round(ptx * tx / 1000.0), slot]
                seq += 1
                if slot == 3:
                    push(heap, (t + tx + half, seq, _AT_HELPER, f))
                elif c >= 0:
                    fin = max(t, cell_free[c]) + att * cell1
                    cell_free[c] = fin
                    push(heap, (max(fin, t + tx) + half, seq, _AT_EDGE, f))
                else:
                    push(heap, (t + tx + half, seq, _AT_SERVER, f))
            elif kind == EV_TRACE:
                state.trace_step(ca[j])
                gstamp += 1  # every device decides again at its next task
            elif kind == EV_HANDOVER:
                hd = int(ho_dev[ca[j]])
                before = attach[hd]
                state.handover(ca[j])
                if attach[hd] != before:
                    plan[hd] = None
            elif kind == EV_SAMPLE:
                busy = sum(workers) - sum(idle)
                state.sample(t, sum(len(q) for q in queues[:e_n]), len(queues[e_n]), busy)
            elif kind == EV_ROUND:
                state.fl_round(ca[j], t)
        flush()
        pos = hi
    # drain: requests in flight at the horizon finish (their records count)
    while heap:
        now, _, ek, x = pop(heap)
        endogenous(now, ek, x)
    flush()
    state.events += n_ev + int(np.count_nonzero(m.task_skip))
    state.lookups += n_look
