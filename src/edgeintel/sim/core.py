"""The fast engine: one heap of endogenous events merged with the pre-sorted exogenous stream.

Exogenous events (task arrivals, handovers, link-trace steps, federated rounds,
samples) are drawn and sorted up front by numpy (``SimModel.exogenous``) and
read in chunks, never pushed on the heap. Only what depends on contention is
an event: a request reaching its station, reaching a server, and a batch
finishing. FIFO resources with one server at a time (a device's CPU, a cell
uplink, a backhaul) need no events at all: their finish time is
``max(arrival, free) + service`` (Lindley's recursion), computed when the
request joins, in arrival order — the order SimPy's FIFO ``Resource`` grants.

``run_core`` is a generator: with a policy it never yields; without one it
yields an ``Observation`` at each decision and expects the action to be sent
back (``Simulation.next_decision`` / ``decide`` drive it).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Generator

from edgeintel.sim.model import EV_HANDOVER, EV_ROUND, EV_SAMPLE, EV_TASK, EV_TRACE
from edgeintel.sim.policy import Observation
from edgeintel.sim.state import DROP_QUEUE, SimState

__all__ = ["run_core"]

_AT_EDGE, _AT_SERVER, _BATCH_DONE = 0, 1, 2
_CHUNK = 1 << 16


def run_core(
    state: SimState, progress: Callable[[float], None] | None = None
) -> Generator[Observation, int, None]:
    """Run the model to its horizon, updating ``state``; yields decisions when it has no policy."""
    m = state.model
    s = state.settings
    e_n = state.E
    n_srv = e_n + 1
    ex_t, ex_k, ex_a = m.exogenous()
    total = int(ex_t.size)
    heap: list[tuple[int, int, int, int]] = []
    push, pop = heapq.heappush, heapq.heappop
    seq = 0
    queues: list[deque[int]] = [deque() for _ in range(n_srv)]
    idle = list(m.server_workers)
    workers = m.server_workers
    batches: dict[int, tuple[int, list[int]]] = {}
    cell_free = [0] * e_n
    bh_free = [0] * e_n
    dev_free = state.dev_free
    max_batch = s.max_batch
    limit = s.queue_limit
    policy = state.policy
    task_dev = m.task_dev
    skip_or_dead = state.skip_or_dead
    needs = state.needs_decision
    slot_of = state.slot
    offload = state.offload
    at_edge = state.at_edge
    complete = state.complete
    batch_ns = state.batch_ns
    done_arr = state.done
    bs_attach = state.attach

    def to_server(i: int, srv: int, now: int) -> None:
        nonlocal seq
        state.events += 1
        if idle[srv] > 0:
            idle[srv] -= 1
            seq += 1
            batches[seq] = (srv, [i])
            push(heap, (now + batch_ns(srv, 1), seq, _BATCH_DONE, seq))
        elif len(queues[srv]) >= limit:
            state.drop(i, DROP_QUEUE)
        else:
            queues[srv].append(i)

    def endogenous(now: int, kind: int, x: int) -> None:
        nonlocal seq
        if kind == _BATCH_DONE:
            state.events += 1
            srv, items = batches.pop(x)
            for i in items:
                complete(i, now)
            q = queues[srv]
            if q:
                take = [q.popleft() for _ in range(min(max_batch, len(q)))]
                seq += 1
                batches[seq] = (srv, take)
                push(heap, (now + batch_ns(srv, len(take)), seq, _BATCH_DONE, seq))
            else:
                idle[srv] += 1
        elif kind == _AT_EDGE:
            nxt, svc, half = at_edge(x, now)
            if nxt == e_n:  # cloud-bound miss: the station's backhaul FIFO
                c = int(state.bs[x])
                fin = max(now, bh_free[c]) + svc
                bh_free[c] = fin
                seq += 1
                push(heap, (fin + half, seq, _AT_SERVER, x))
            elif nxt >= 0:
                to_server(x, nxt, now)
        else:  # _AT_SERVER: the cloud
            to_server(x, e_n, now)

    pos = 0
    while pos < total:
        hi = min(total, pos + _CHUNK)
        ct = ex_t[pos:hi].tolist()
        ck = ex_k[pos:hi].tolist()
        ca = ex_a[pos:hi].tolist()
        devs = task_dev[ex_a[pos:hi][ex_k[pos:hi] == EV_TASK]].tolist()
        di = 0
        if progress is not None:
            progress(min(1.0, ct[0] / m.horizon_ns))
        for j in range(hi - pos):
            t = ct[j]
            while heap and heap[0][0] < t:
                now, _, ek, x = pop(heap)
                endogenous(now, ek, x)
            kind = ck[j]
            if kind == EV_TASK:
                i = ca[j]
                d = devs[di]
                di += 1
                state.events += 1
                if skip_or_dead(i, d):
                    continue
                if needs(d):
                    a = bs_attach[d]
                    obs = state.observe(d, t, len(queues[a]) if a < e_n else 0, len(queues[e_n]))
                    action = policy.decide(obs) if policy is not None else (yield obs)
                    slot = state.apply(d, action, obs)
                else:
                    slot = slot_of[d]
                if slot == 0:
                    svc = state.local_energy(i, d)
                    fin = max(t, dev_free[d]) + svc
                    dev_free[d] = fin
                    done_arr[i] = fin
                    continue
                c, tx, half = offload(i, d, slot)
                seq += 1
                if c >= 0:
                    fin = max(t, cell_free[c]) + tx
                    cell_free[c] = fin
                    push(heap, (fin + half, seq, _AT_EDGE, i))
                else:
                    push(heap, (t + tx + half, seq, _AT_SERVER, i))
            elif kind == EV_TRACE:
                state.trace_step(ca[j])
            elif kind == EV_HANDOVER:
                state.handover(ca[j])
            elif kind == EV_SAMPLE:
                busy = sum(workers) - sum(idle)
                state.sample(t, sum(len(q) for q in queues[:e_n]), len(queues[e_n]), busy)
            elif kind == EV_ROUND:
                state.fl_round(ca[j], t)
        pos = hi
    # drain: requests in flight at the horizon finish (their records count)
    while heap:
        now, _, ek, x = pop(heap)
        endogenous(now, ek, x)
