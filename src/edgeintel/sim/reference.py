"""The reference engine: the same model as SimPy processes (docs/simulator.md).

Written the plain SimPy way — a driver process replays the exogenous stream, a
process per request holds a FIFO ``simpy.Resource`` for the device CPU, the
cell uplink and the backhaul, servers are a ``simpy.Store`` served by one
process per worker taking batches — and calling the shared handlers of
``state.py`` at the times SimPy reaches. Its per-task records are what the
fast core must reproduce exactly (``tests/sim/test_engines.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from edgeintel.extras import require
from edgeintel.sim.model import EV_HANDOVER, EV_ROUND, EV_SAMPLE, EV_TASK, EV_TRACE
from edgeintel.sim.state import DROP_QUEUE, SimState

__all__ = ["run_reference"]


def run_reference(state: SimState, progress: Callable[[float], None] | None = None) -> None:
    """Run the model to completion with SimPy; ``state.policy`` must be set."""
    simpy = require("simpy", "the SimPy reference engine")
    m = state.model
    s = state.settings
    e_n = state.E
    policy = state.policy
    if policy is None:
        raise ValueError("the SimPy engine needs a policy object (external decisions: engine fast)")
    env = simpy.Environment()
    cpus: dict[int, Any] = {}
    cells = [simpy.Resource(env, 1) for _ in range(e_n)]
    backhauls = [simpy.Resource(env, 1) for _ in range(e_n)]
    stores = [simpy.Store(env) for _ in range(e_n + 1)]
    ex_t, ex_k, ex_a = (a.tolist() for a in m.exogenous())
    alerts = m.task_alert

    def server_put(srv: int, i: int) -> None:
        state.events += 1
        store = stores[srv]
        if not store.get_queue and len(store.items) >= s.queue_limit:
            state.drop(i, DROP_QUEUE)
        elif alerts.size and alerts[i] and not store.get_queue:  # ahead of the non-alerts
            pos = 0
            while pos < len(store.items) and alerts[store.items[pos]]:
                pos += 1
            store.items.insert(pos, i)
        else:
            store.put(i)

    def worker(srv: int) -> Generator[Any, Any, None]:
        store = stores[srv]
        while True:
            first = yield store.get()
            batch = [first]
            while store.items and len(batch) < s.max_batch:
                batch.append(store.items.pop(0))
            yield env.timeout(state.batch_ns(srv, len(batch)))
            state.events += 1
            for i in batch:
                state.complete(i, env.now)

    def local(i: int, d: int, svc: int) -> Generator[Any, Any, None]:
        cpu = cpus.get(d)
        if cpu is None:
            cpu = cpus[d] = simpy.Resource(env, 1)
        with cpu.request() as req:
            yield req
            yield env.timeout(svc)
        state.done[i] = env.now

    def d2d(i: int, h: int, delay: int) -> Generator[Any, Any, None]:
        yield env.timeout(delay)  # over the D2D link to the helper
        svc = state.at_helper(i, h)
        if svc < 0:
            return
        cpu = cpus.get(h)
        if cpu is None:
            cpu = cpus[h] = simpy.Resource(env, 1)
        with cpu.request() as req:  # the helper's own CPU, FIFO with its local tasks
            yield req
            yield env.timeout(svc)
        state.complete(i, env.now)

    def offload(i: int, c: int, tx: int, cell: int, half: int) -> Generator[Any, Any, None]:
        if c < 0:  # attached to the cloud: straight there
            yield env.timeout(tx + half)
            server_put(e_n, i)
            return
        sent = env.now + tx  # the device alone could not send it sooner
        with cells[c].request() as req:
            yield req
            yield env.timeout(cell)
        if env.now < sent:
            yield env.timeout(sent - env.now)
        yield env.timeout(half)
        nxt, svc, bh_half = state.at_edge(i, env.now)
        if nxt == e_n:
            with backhauls[c].request() as req:
                yield req
                yield env.timeout(svc)
            yield env.timeout(bh_half)
            server_put(e_n, i)
        elif nxt >= 0:
            server_put(nxt, i)

    def driver() -> Generator[Any, Any, None]:
        task_dev = m.task_dev
        step = max(1, len(ex_t) // 100)
        for j, t in enumerate(ex_t):
            if t > env.now:
                yield env.timeout(t - env.now)
            if progress is not None and j % step == 0:
                progress(min(1.0, t / m.horizon_ns))
            kind, a = ex_k[j], ex_a[j]
            if kind == EV_TASK:
                d = int(task_dev[a])
                state.events += 1
                if state.skip_or_dead(a, d):
                    continue
                if state.needs_decision(d):
                    att = state.attach[d]
                    qe = len(stores[att].items) if att < e_n else 0
                    obs = state.observe(d, t, qe, len(stores[e_n].items))
                    slot = state.apply(d, policy.decide(obs), obs)
                else:
                    slot = state.slot[d]
                if slot == 0:
                    env.process(local(a, d, state.local_energy(a, d)))
                elif slot == 3:
                    env.process(d2d(a, *state.d2d_send(a, d)))
                else:
                    env.process(offload(a, *state.offload(a, d, slot)))
            elif kind == EV_TRACE:
                state.trace_step(a)
            elif kind == EV_HANDOVER:
                state.handover(a)
            elif kind == EV_SAMPLE:
                busy = sum(m.server_workers) - sum(len(st.get_queue) for st in stores)
                state.sample(
                    t, sum(len(st.items) for st in stores[:e_n]), len(stores[e_n].items), busy
                )
            elif kind == EV_ROUND:
                state.fl_round(a, t)

    for srv in range(e_n + 1):
        for _ in range(m.server_workers[srv]):
            env.process(worker(srv))
    env.process(driver())
    env.run()
    state.events += int(m.task_skip.sum())  # skipped tasks end at arrival (not replayed)
