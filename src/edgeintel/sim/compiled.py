"""The compiled engine (``engine="fast"`` with numba): ``kernel.advance`` driven from Python.

The kernel runs the fast core's model over arrays and comes back here only for
what the shared Python objects own: an offloading decision (``SimState.observe``,
the policy, ``SimState.apply``), a link-trace step, a sample for the plots, a
federated round; and to grow its request pool or report progress. Its records
are the fast core's and the SimPy reference's, exactly (``tests/sim/test_engines.py``).

Used when numba is installed (the ``fast`` extra) and the stations' cache policy is
one the kernel implements (``lru``, ``fifo``) with a catalogue it can index;
otherwise ``engine="fast"`` runs ``core.py`` (``available`` says which).
"""

from __future__ import annotations

from collections.abc import Callable, Generator

import numpy as np

from edgeintel.sim import kernel as k
from edgeintel.sim.model import EV_ROUND, EV_SAMPLE, EV_TRACE, SimModel
from edgeintel.sim.policy import Observation
from edgeintel.sim.state import SimState

__all__ = ["available", "run_compiled"]

KERNEL_POLICIES = ("lru", "fifo")
MAX_CACHE_CELLS = 400_000_000
"""Largest stations x catalogue the kernel's key-indexed caches take (9 bytes a cell)."""
_CHUNK_TASKS = 1 << 21
_POOL0 = 1 << 14


def available(model: SimModel) -> bool:
    """Whether the compiled kernel runs this model (numba present, a kernel cache policy, and
    caches indexable by key within ``MAX_CACHE_CELLS``)."""
    s = model.settings
    return (
        k.COMPILED
        and s.cache_policy in KERNEL_POLICIES
        and model.num_edges * s.catalog <= MAX_CACHE_CELLS
    )


def _others(m: SimModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The exogenous events other than tasks, sorted as ``SimModel.exogenous`` sorts them."""
    parts = [m.epoch_ns[1:], m.ho_t, m.round_t, m.sample_t]
    kinds = [EV_TRACE, k.EV_HANDOVER, EV_ROUND, EV_SAMPLE]
    idx = [
        np.arange(1, m.epoch_ns.size, dtype=np.int64),
        np.arange(m.ho_t.size, dtype=np.int64),
        np.arange(m.round_t.size, dtype=np.int64),
        np.arange(m.sample_t.size, dtype=np.int64),
    ]
    t = np.concatenate(parts).astype(np.int64)
    kd = np.concatenate(
        [np.full(p.size, v, dtype=np.int64) for p, v in zip(parts, kinds, strict=True)]
    )
    a = np.concatenate(idx)
    order = np.lexsort((a, kd, t))
    return t[order], kd[order], a[order]


def run_compiled(
    state: SimState, progress: Callable[[float], None] | None = None
) -> Generator[Observation, int, None]:
    """Run the model to its horizon with the kernel; a generator like ``core.run_core``."""
    m = state.model
    s = state.settings
    e_n, n = state.E, m.num_devices
    n_srv = e_n + 1
    # the state the kernel and the shared handlers both touch: arrays, not lists
    battery = np.asarray(state.battery, dtype=np.int64)
    attach = np.asarray(state.attach, dtype=np.int64)
    version = np.asarray(state.version, dtype=np.int64)
    state.battery, state.attach, state.version = battery, attach, version  # type: ignore[assignment]
    task_t = np.asarray(m.task_t, dtype=np.int64)
    task_dev = np.asarray(m.task_dev).astype(np.int32, copy=False)
    task_skip = np.asarray(m.task_skip, dtype=np.bool_)
    task_key = np.asarray(m.task_key).astype(np.int32, copy=False)
    task_u = np.asarray(m.task_u, dtype=np.float64)
    ovh = (
        np.zeros(0, np.int64)
        if m.task_overhead_ns is None
        else np.asarray(m.task_overhead_ns, np.int64)
    )
    o_t, o_k, o_a = _others(m)
    alert = np.asarray(m.task_alert, dtype=np.bool_)
    ho_dev = np.asarray(m.ho_dev, dtype=np.int64)
    ho_u = np.asarray(m.ho_u, dtype=np.float64)
    dev_free = np.zeros(n, dtype=np.int64)
    pw = np.asarray(m.dev_power, dtype=np.float64)
    dev_i = np.zeros((n, 2), dtype=np.int64)
    dev_i[:, k.D_SVC] = state.local_ns
    dev_i[:, k.D_HELPER] = m.helper if m.helper.size else -1
    pi = np.zeros((n, k.PCOLS), dtype=np.int64)
    pi[:, k.P_STAMP] = -1
    pf = np.zeros((n, 3), dtype=np.float64)
    follow = s.mobility.follow_entries if m.ho_t.size else 0
    fq = np.zeros((n if follow else 1, max(follow, 1)), dtype=np.int32)
    fq_n = np.zeros(n if follow else 1, dtype=np.int64)
    workers = list(m.server_workers)
    srv = np.zeros((n_srv, 4), dtype=np.int64)
    srv[:, k.S_IDLE] = workers
    srv[:, k.S_HEAD] = srv[:, k.S_TAIL] = -1
    mb = s.max_batch
    batch_ns = np.array(
        [
            [0] + [round(svc * (1.0 + (j - 1) * s.batch_marginal)) for j in range(1, mb + 1)]
            for svc in m.server_svc_ns
        ],
        dtype=np.int64,
    )
    cells = np.zeros((max(e_n, 1), 2), dtype=np.int64)
    bhbw = np.ascontiguousarray(m.bh_bw, dtype=np.float64).reshape(e_n, -1)
    bhrtt = np.ascontiguousarray(m.bh_rtt, dtype=np.float64).reshape(e_n, -1)
    cat = s.catalog
    cn = np.full((max(e_n, 1), cat), -1, dtype=np.int32)
    cp = np.full((max(e_n, 1), cat), -1, dtype=np.int32)
    cin = np.zeros((max(e_n, 1), cat), dtype=np.bool_)
    ch = np.zeros((max(e_n, 1), 3), dtype=np.int64)
    ch[:, 0] = ch[:, 1] = -1
    pool = _POOL0
    rec = np.zeros((pool, k.RCOLS), dtype=np.int64)
    rfree = np.arange(pool - 1, -1, -1, dtype=np.int64)
    nb = sum(workers) + 1
    bat = np.zeros((nb, mb + 2), dtype=np.int64)
    bfree = np.arange(nb - 1, -1, -1, dtype=np.int64)
    h = np.zeros((pool + nb + 1, 4), dtype=np.int64)
    sc = np.zeros(k.SCALARS, dtype=np.int64)
    sc[k.RTOP], sc[k.BTOP], sc[k.DECIDED] = pool, nb, -1
    sc[k.STOP] = _CHUNK_TASKS
    ip = np.zeros(k.PARAMS, dtype=np.int64)
    ip[k.IN_B], ip[k.RES_B], ip[k.LIMIT], ip[k.MAX_BATCH] = (
        s.input_bytes, s.result_bytes, s.queue_limit, mb,
    )  # fmt: skip
    ip[k.CACHE_CAP], ip[k.LRU], ip[k.NUM_EDGES] = s.cache_entries, s.cache_policy == "lru", e_n
    ip[k.FOLLOW], ip[k.HAS_OVH], ip[k.PER_TASK] = follow, ovh.size > 0, state.per_task
    policy = state.policy
    local_ns, pwl = state.local_ns, state.pw
    handovers0 = state.handovers
    while True:
        code = k.advance(
            task_t, task_dev, task_skip, task_key, task_u, ovh, alert, o_t, o_k, o_a, ho_dev, ho_u,
            state.place, state.done, state.hit, state.energy, state.bs, state.attempts,
            battery, attach, dev_free, version, pw, dev_i, pi, pf, fq, fq_n,
            srv, batch_ns, cells, bhbw, bhrtt, cn, cp, cin, ch,
            rec, rfree, bat, bfree, h, sc, ip,
        )  # fmt: skip
        if code == k.DECIDE:
            i = int(sc[k.ARG])
            d = int(task_dev[i])
            a = int(attach[d])
            obs = state.observe(
                d, int(task_t[i]), int(srv[a, k.S_LEN]) if a < e_n else 0, int(srv[e_n, k.S_LEN])
            )
            action = policy.decide(obs) if policy is not None else (yield obs)
            slot = state.apply(d, action, obs)
            c, tx1, cell1, half, lnloss, back = (
                state.d2d_consts() if slot == 3 else state.link_consts(d)
            )
            pc, ptx, _ = pwl[d]
            svc = local_ns[d]
            pi[d] = (sc[k.GSTAMP], slot, c, tx1, cell1, half, back, svc, round(pc * svc / 1000.0))
            pf[d] = (lnloss, state.dev_link(d)[2], ptx)
            sc[k.DECIDED] = i
        elif code == k.EXOGENOUS:
            j = int(sc[k.ARG])
            kind, a_j, t = int(o_k[j]), int(o_a[j]), int(o_t[j])
            if kind == EV_TRACE:
                state.trace_step(a_j)
                sc[k.EPOCH] = a_j
                sc[k.GSTAMP] += 1  # every device decides again at its next task
            elif kind == EV_SAMPLE:
                state.handovers = handovers0 + int(sc[k.HANDOVERS])
                busy = sum(workers) - int(srv[:, k.S_IDLE].sum())
                state.sample(t, int(srv[:e_n, k.S_LEN].sum()), int(srv[e_n, k.S_LEN]), busy)
            elif kind == EV_ROUND:
                state.fl_round(a_j, t)
        elif code == k.GROW:
            rec = np.concatenate([rec, np.zeros_like(rec)])
            top = int(sc[k.RTOP])
            fresh = np.arange(2 * pool - 1, pool - 1, -1, dtype=np.int64)
            rfree = np.concatenate([rfree[:top], fresh, np.zeros(pool - top, dtype=np.int64)])
            sc[k.RTOP] = top + pool
            h = np.concatenate([h, np.zeros((pool, 4), dtype=np.int64)])
            pool *= 2
        elif code == k.CHUNK:
            sc[k.STOP] += _CHUNK_TASKS
            if progress is not None:
                progress(
                    min(1.0, float(task_t[min(int(sc[k.TPOS]), task_t.size - 1)]) / m.horizon_ns)
                )
        else:
            break
    state.events += int(sc[k.NEV]) + int(np.count_nonzero(task_skip))
    state.lookups += int(sc[k.NLOOK])
    state.handovers = handovers0 + int(sc[k.HANDOVERS])
