"""The compiled engine's inner loop: the fast core's model over flat arrays, compiled by numba.

Same events, same order, same integer arithmetic as ``core.py`` (whose records the
SimPy reference checks), but every piece of state is an array: per-device plan
rows, a binary heap of ``(time ns, seq, kind, payload)`` rows, a pool of in-flight
request rows, batches, server queues as linked lists through the request pool,
and the stations' LRU / FIFO result caches as doubly linked lists over the
catalogue's keys. :func:`advance` runs until something needs Python — an
offloading decision (the policy objects stay Python), a link-trace step, a
sample, a federated round, a full request pool, or the end of a progress chunk —
and returns a code; ``compiled.py`` answers it and calls again.

Without numba (the ``fast`` extra) these functions still run, as slow Python:
``engine="fast"`` then uses ``core.py`` instead (``compiled.available``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

try:
    from numba import njit

    COMPILED = True
except ImportError:  # pragma: no cover - the ``fast`` extra is missing
    COMPILED = False

    def njit(**_options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:  # type: ignore[no-redef]
        return lambda f: f


__all__ = ["COMPILED", "advance"]

# return codes of advance
DONE, DECIDE, EXOGENOUS, GROW, CHUNK = 0, 1, 2, 3, 4
# scalar state (the ``sc`` int64 array)
TPOS, OPOS, SEQ, GSTAMP, EPOCH, HSIZE, NEV, NLOOK, RTOP, BTOP, HANDOVERS, ARG, STOP, DECIDED = (
    range(14)
)
SCALARS = 14
# int parameters (the ``ip`` array)
IN_B, RES_B, LIMIT, MAX_BATCH, CACHE_CAP, LRU, NUM_EDGES, FOLLOW, HAS_OVH, PER_TASK = range(10)
PARAMS = 10
# request row columns
R_I, R_D, R_C, R_KEY, R_T, R_TX, R_BACK, R_ETX, R_SLOT, R_NEXT, R_EH = range(11)
RCOLS = 11
# plan row columns (int64) and float columns
P_STAMP, P_SLOT, P_C, P_TX1, P_CELL1, P_HALF, P_BACK, P_SVC, P_E = range(9)
PCOLS = 9
F_LNLOSS, F_LOSS, F_PTX = range(3)
# server rows: idle workers, queue head, tail, length
S_IDLE, S_HEAD, S_TAIL, S_LEN = range(4)
# heap event kinds (as core.py)
AT_EDGE, AT_SERVER, BATCH_DONE, AT_HELPER, D2D_DONE = 0, 1, 2, 3, 4
# device int columns (the ``dev_i`` array): D2D helper (-1: none), local compute ns
D_HELPER, D_SVC = 0, 1
# exogenous kinds (as model.py)
EV_HANDOVER = 1
PLACE_DROP_BATTERY, PLACE_DROP_QUEUE, PLACE_DROP_OUTAGE = -2, -3, -4
MAX_ATTEMPTS = 16


@njit(cache=True)
def _rnd(x: float) -> int:
    """Python's ``round(x)`` (half to even) for a finite float."""
    return int(np.rint(x))


@njit(cache=True)
def _push(h: np.ndarray, sc: np.ndarray, t: int, kind: int, x: int) -> None:
    seq = sc[SEQ] + 1
    sc[SEQ] = seq
    i = sc[HSIZE]
    sc[HSIZE] = i + 1
    while i > 0:
        p = (i - 1) >> 1
        if h[p, 0] < t or (h[p, 0] == t and h[p, 1] < seq):
            break
        h[i, 0], h[i, 1], h[i, 2], h[i, 3] = h[p, 0], h[p, 1], h[p, 2], h[p, 3]
        i = p
    h[i, 0], h[i, 1], h[i, 2], h[i, 3] = t, seq, kind, x


@njit(cache=True)
def _pop(h: np.ndarray, sc: np.ndarray) -> tuple[int, int, int]:
    t, kind, x = h[0, 0], h[0, 2], h[0, 3]
    n = sc[HSIZE] - 1
    sc[HSIZE] = n
    if n > 0:
        lt, ls, lk, lx = h[n, 0], h[n, 1], h[n, 2], h[n, 3]
        i = 0
        while True:
            c = 2 * i + 1
            if c >= n:
                break
            if c + 1 < n and (
                h[c + 1, 0] < h[c, 0] or (h[c + 1, 0] == h[c, 0] and h[c + 1, 1] < h[c, 1])
            ):
                c += 1
            if h[c, 0] > lt or (h[c, 0] == lt and h[c, 1] > ls):
                break
            h[i, 0], h[i, 1], h[i, 2], h[i, 3] = h[c, 0], h[c, 1], h[c, 2], h[c, 3]
            i = c
        h[i, 0], h[i, 1], h[i, 2], h[i, 3] = lt, ls, lk, lx
    return t, kind, x


# ----------------------------------------------------------------- caches (LRU / FIFO)
@njit(cache=True)
def _unlink(cn: np.ndarray, cp: np.ndarray, ch: np.ndarray, c: int, k: int) -> None:
    p, n = cp[c, k], cn[c, k]
    if p >= 0:
        cn[c, p] = n
    else:
        ch[c, 0] = n
    if n >= 0:
        cp[c, n] = p
    else:
        ch[c, 1] = p


@njit(cache=True)
def _to_head(cn: np.ndarray, cp: np.ndarray, ch: np.ndarray, c: int, k: int) -> None:
    h = ch[c, 0]
    cp[c, k] = -1
    cn[c, k] = h
    if h >= 0:
        cp[c, h] = k
    else:
        ch[c, 1] = k
    ch[c, 0] = k


@njit(cache=True)
def _lookup(
    cn: np.ndarray, cp: np.ndarray, cin: np.ndarray, ch: np.ndarray, lru: int, c: int, k: int
) -> bool:
    if not cin[c, k]:
        return False
    if lru and ch[c, 0] != k:
        _unlink(cn, cp, ch, c, k)
        _to_head(cn, cp, ch, c, k)
    return True


@njit(cache=True)
def _admit(
    cn: np.ndarray, cp: np.ndarray, cin: np.ndarray, ch: np.ndarray, cap: int, c: int, k: int
) -> None:
    """Admit a key not in the cache: the least recent (oldest) leave while it is full."""
    while ch[c, 2] >= cap:
        old = ch[c, 1]
        _unlink(cn, cp, ch, c, old)
        cin[c, old] = False
        ch[c, 2] -= 1
    _to_head(cn, cp, ch, c, k)
    cin[c, k] = True
    ch[c, 2] += 1


# ----------------------------------------------------------------- the loop
@njit(cache=True)
def advance(
    task_t: np.ndarray, task_dev: np.ndarray, task_skip: np.ndarray, task_key: np.ndarray,
    task_u: np.ndarray, ovh: np.ndarray, alert: np.ndarray, o_t: np.ndarray, o_k: np.ndarray,
    o_a: np.ndarray,
    ho_dev: np.ndarray, ho_u: np.ndarray,
    place: np.ndarray, done: np.ndarray, hit: np.ndarray, energy: np.ndarray, bs: np.ndarray,
    attempts: np.ndarray,
    battery: np.ndarray, attach: np.ndarray, dev_free: np.ndarray, version: np.ndarray,
    pw: np.ndarray, dev_i: np.ndarray, pi: np.ndarray, pf: np.ndarray, fq: np.ndarray,
    fq_n: np.ndarray,
    srv: np.ndarray, batch_ns: np.ndarray, cells: np.ndarray, bhbw: np.ndarray,
    bhrtt: np.ndarray, cn: np.ndarray, cp: np.ndarray, cin: np.ndarray, ch: np.ndarray,
    rec: np.ndarray, rfree: np.ndarray, bat: np.ndarray, bfree: np.ndarray, h: np.ndarray,
    sc: np.ndarray, ip: np.ndarray,
) -> int:  # fmt: skip
    """Advance until Python is needed; returns a code (``DONE``, ``DECIDE``: ``sc[ARG]`` is the
    task; ``EXOGENOUS``: ``sc[ARG]`` the exogenous row; ``GROW``: the request pool is full;
    ``CHUNK``: ``sc[STOP]`` tasks reached)."""
    in_b, res_b, limit, max_batch = ip[IN_B], ip[RES_B], ip[LIMIT], ip[MAX_BATCH]
    cap, lru, e_n, nf = ip[CACHE_CAP], ip[LRU], ip[NUM_EDGES], ip[FOLLOW]
    has_ovh, per_task = ip[HAS_OVH], ip[PER_TASK]
    m_task, m_o = task_t.size, o_t.size
    while True:
        ti, oj = sc[TPOS], sc[OPOS]
        while ti < m_task and task_skip[ti]:
            ti += 1
        sc[TPOS] = ti
        has_t, has_o = ti < m_task, oj < m_o
        if has_t and ti >= sc[STOP]:
            return CHUNK
        other = has_o and (not has_t or o_t[oj] <= task_t[ti])
        if other:
            t = o_t[oj]
        elif has_t:
            t = task_t[ti]
        else:
            t = np.iinfo(np.int64).max  # drain: every event left
        # ---- endogenous events before t
        while sc[HSIZE] > 0 and h[0, 0] < t:
            now, kind, x = _pop(h, sc)
            if kind == BATCH_DONE:
                sc[NEV] += 1
                s = bat[x, 0]
                ep = sc[EPOCH]
                for q in range(bat[x, 1]):
                    r = bat[x, 2 + q]
                    c, d, back = rec[r, R_C], rec[r, R_D], rec[r, R_BACK]
                    if c >= 0 and rec[r, R_SLOT] == 2:
                        bw = bhbw[c, ep]
                        back += _rnd(bhrtt[c, ep] * 500_000.0)
                        if bw > 0 and math.isfinite(bw):
                            back += math.ceil(8000.0 * res_b / bw)
                    dn = now + back
                    e = rec[r, R_ETX] + _rnd(pw[d, 2] * (dn - rec[r, R_T] - rec[r, R_TX]) / 1000.0)
                    battery[d] -= e
                    i = rec[r, R_I]
                    done[i] = dn
                    energy[i] = e
                    if c >= 0:
                        key = rec[r, R_KEY]
                        if not cin[c, key]:
                            _admit(cn, cp, cin, ch, cap, c, key)
                        if nf > 0:
                            fq[d, fq_n[d] % nf] = key
                            fq_n[d] += 1
                    rfree[sc[RTOP]] = r
                    sc[RTOP] += 1
                if srv[s, S_LEN] > 0:
                    k = min(max_batch, srv[s, S_LEN])
                    for q in range(k):
                        r = srv[s, S_HEAD]
                        srv[s, S_HEAD] = rec[r, R_NEXT]
                        bat[x, 2 + q] = r
                    srv[s, S_LEN] -= k
                    if srv[s, S_LEN] == 0:
                        srv[s, S_TAIL] = -1
                    bat[x, 1] = k
                    _push(h, sc, now + batch_ns[s, k], BATCH_DONE, x)
                else:
                    srv[s, S_IDLE] += 1
                    bfree[sc[BTOP]] = x
                    sc[BTOP] += 1
                continue
            r = x
            if kind == AT_HELPER:  # a D2D task reaches its helper's CPU (FIFO, Lindley)
                sc[NEV] += 1
                hp = dev_i[rec[r, R_D], D_HELPER]
                if battery[hp] <= 0:
                    _drop(rec, r, PLACE_DROP_BATTERY, battery, place, energy, rfree, sc)
                    continue
                svc = dev_i[hp, D_SVC]
                e = _rnd(pw[hp, 0] * svc / 1000.0)
                battery[hp] -= e
                rec[r, R_EH] = e
                fin = max(now, dev_free[hp]) + svc
                dev_free[hp] = fin
                _push(h, sc, fin, D2D_DONE, r)
                continue
            if kind == D2D_DONE:
                d = rec[r, R_D]
                dn = now + rec[r, R_BACK]
                e = rec[r, R_ETX] + _rnd(pw[d, 2] * (dn - rec[r, R_T] - rec[r, R_TX]) / 1000.0)
                battery[d] -= e
                i = rec[r, R_I]
                done[i] = dn
                energy[i] = e + rec[r, R_EH]
                rfree[sc[RTOP]] = r
                sc[RTOP] += 1
                continue
            if kind == AT_EDGE:
                sc[NEV] += 1
                sc[NLOOK] += 1
                c, d, key = rec[r, R_C], rec[r, R_D], rec[r, R_KEY]
                if _lookup(cn, cp, cin, ch, lru, c, key):
                    dn = now + rec[r, R_BACK]
                    e = rec[r, R_ETX] + _rnd(pw[d, 2] * (dn - rec[r, R_T] - rec[r, R_TX]) / 1000.0)
                    battery[d] -= e
                    i = rec[r, R_I]
                    hit[i] = True
                    done[i] = dn
                    energy[i] = e
                    if nf > 0:
                        fq[d, fq_n[d] % nf] = key
                        fq_n[d] += 1
                    rfree[sc[RTOP]] = r
                    sc[RTOP] += 1
                    continue
                if rec[r, R_SLOT] == 1:
                    s = c
                else:
                    ep = sc[EPOCH]
                    bw = bhbw[c, ep]
                    if bw <= 0:
                        _drop(rec, r, PLACE_DROP_OUTAGE, battery, place, energy, rfree, sc)
                        continue
                    svc = math.ceil(8000.0 * in_b / bw) if math.isfinite(bw) else 0
                    fin = max(now, cells[c, 1]) + svc
                    cells[c, 1] = fin
                    _push(h, sc, fin + _rnd(bhrtt[c, ep] * 500_000.0), AT_SERVER, r)
                    continue
            else:  # AT_SERVER: the cloud
                s = e_n
            # ---- to a server
            sc[NEV] += 1
            if srv[s, S_IDLE] > 0:
                srv[s, S_IDLE] -= 1
                sc[BTOP] -= 1
                b = bfree[sc[BTOP]]
                bat[b, 0] = s
                bat[b, 1] = 1
                bat[b, 2] = r
                _push(h, sc, now + batch_ns[s, 1], BATCH_DONE, b)
            elif srv[s, S_LEN] >= limit:
                _drop(rec, r, PLACE_DROP_QUEUE, battery, place, energy, rfree, sc)
            elif alert.size and alert[rec[r, R_I]]:  # ahead of every waiting non-alert
                _enqueue_alert(srv, rec, alert, s, r)
            else:
                rec[r, R_NEXT] = -1
                if srv[s, S_LEN] > 0:
                    rec[srv[s, S_TAIL], R_NEXT] = r
                else:
                    srv[s, S_HEAD] = r
                srv[s, S_TAIL] = r
                srv[s, S_LEN] += 1
        if not has_t and not has_o:
            return DONE
        # ---- the exogenous event at t
        if other:
            if o_k[oj] != EV_HANDOVER:
                sc[OPOS] = oj + 1
                sc[ARG] = oj
                return EXOGENOUS
            sc[OPOS] = oj + 1
            sc[NEV] += 1
            j = o_a[oj]
            d = ho_dev[j]
            old = attach[d]
            if old >= e_n or e_n < 2:
                continue
            new = (old + 1 + int(ho_u[j] * (e_n - 1))) % e_n
            attach[d] = new
            version[d] += 1
            sc[HANDOVERS] += 1
            pi[d, P_STAMP] = -1
            if nf > 0:
                n_q = fq_n[d]
                for q in range(max(0, n_q - nf), n_q):
                    key = fq[d, q % nf]
                    if not cin[new, key]:
                        _admit(cn, cp, cin, ch, cap, new, key)
            continue
        i = ti
        d = task_dev[i]
        if battery[d] <= 0:
            sc[NEV] += 1
            place[i] = PLACE_DROP_BATTERY
            sc[TPOS] = ti + 1
            continue
        if (per_task or pi[d, P_STAMP] != sc[GSTAMP]) and sc[DECIDED] != i:
            sc[ARG] = i
            return DECIDE
        slot = pi[d, P_SLOT]
        if slot != 0 and sc[RTOP] == 0:
            return GROW
        sc[NEV] += 1
        sc[TPOS] = ti + 1
        if slot == 0:
            e = pi[d, P_E]
            battery[d] -= e
            fin = max(t, dev_free[d]) + pi[d, P_SVC]
            dev_free[d] = fin
            place[i] = 0
            done[i] = fin
            energy[i] = e
            continue
        att = 1
        lnloss = pf[d, F_LNLOSS]
        u = task_u[i]
        if lnloss != 0.0 and u <= pf[d, F_LOSS]:
            att = min(MAX_ATTEMPTS, 1 + int(math.log(u) / lnloss))
        tx = att * pi[d, P_TX1]
        c = pi[d, P_C]
        place[i] = slot
        attempts[i] = att
        bs[i] = c
        sc[RTOP] -= 1
        r = rfree[sc[RTOP]]
        rec[r, R_I] = i
        rec[r, R_D] = d
        rec[r, R_C] = c
        rec[r, R_KEY] = task_key[i]
        rec[r, R_T] = t
        rec[r, R_TX] = tx
        rec[r, R_BACK] = pi[d, P_BACK] + (ovh[i] if has_ovh else 0)
        rec[r, R_ETX] = _rnd(pf[d, F_PTX] * tx / 1000.0)
        rec[r, R_SLOT] = slot
        if slot == 3:
            _push(h, sc, t + tx + pi[d, P_HALF], AT_HELPER, r)
        elif c >= 0:
            fin = max(t, cells[c, 0]) + att * pi[d, P_CELL1]
            cells[c, 0] = fin
            _push(h, sc, max(fin, t + tx) + pi[d, P_HALF], AT_EDGE, r)
        else:
            _push(h, sc, t + tx + pi[d, P_HALF], AT_SERVER, r)


@njit(cache=True)
def _enqueue_alert(srv: np.ndarray, rec: np.ndarray, alert: np.ndarray, s: int, r: int) -> None:
    """Queue request ``r`` (an alert) at server ``s`` after the alerts already waiting at its
    front and before everything else."""
    head = srv[s, S_HEAD]
    if srv[s, S_LEN] == 0 or not alert[rec[head, R_I]]:
        rec[r, R_NEXT] = head
        srv[s, S_HEAD] = r
        if srv[s, S_LEN] == 0:
            srv[s, S_TAIL] = r
    else:
        p = head
        while rec[p, R_NEXT] >= 0 and alert[rec[rec[p, R_NEXT], R_I]]:
            p = rec[p, R_NEXT]
        rec[r, R_NEXT] = rec[p, R_NEXT]
        rec[p, R_NEXT] = r
        if srv[s, S_TAIL] == p:
            srv[s, S_TAIL] = r
    srv[s, S_LEN] += 1


@njit(cache=True)
def _drop(
    rec: np.ndarray, r: int, code: int, battery: np.ndarray, place: np.ndarray,
    energy: np.ndarray, rfree: np.ndarray, sc: np.ndarray,
) -> None:  # fmt: skip
    i, d, e = rec[r, R_I], rec[r, R_D], rec[r, R_ETX]
    battery[d] -= e
    place[i] = code
    energy[i] = e
    rfree[sc[RTOP]] = r
    sc[RTOP] += 1
