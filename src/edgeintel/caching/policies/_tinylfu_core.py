"""W-TinyLFU's state machine: lists, counting Bloom filter, duels; compiled where numba is.

With numba (the ``fast`` extra) the functions are compiled and the state is one int64
array; without it the same functions run as Python over a list (about 6x slower: the
policy gives the same answers either way). All state lives in one array (a compiled
call costs per argument): a header
(:data:`HEADER` slots, named below), then per node id ``next``, ``prev``,
``segment`` and the filter positions, the filter's counters and a buffer of
evicted ids. Node ids are small ints the Python side maps to keys. Lists run from
``head`` (most recent) to ``tail`` (least recent); segment 0 is the window, 1
probation, 2 protected. :mod:`edgeintel.caching.policies.tinylfu` documents the rules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

try:
    from numba import njit, uint64

    COMPILED = True
except ImportError:  # the ``fast`` extra is missing: plain Python over a list
    COMPILED = False
    uint64 = int  # type: ignore[assignment]

    def njit(**_options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:  # type: ignore[no-redef]
        return lambda f: f


__all__ = ["COMPILED", "admit_node", "hit_node", "new_state", "remove_node", "xxh64_u64"]

# header slots
HEAD, TAIL, LEN = 0, 3, 6  # + segment
LEFT, SAMPLE, CAP, MAIN, PROB, PROT, WIDTH, HASHES = 9, 10, 11, 12, 13, 14, 15, 16
NXT, PRV, SEG, POS, CNT, OUT = 17, 18, 19, 20, 21, 22
HEADER = 24

_P1 = uint64(0x9E3779B185EBCA87)
_P2 = uint64(0xC2B2AE3D27D4EB4F)
_P3 = uint64(0x165667B19E3779F9)
_P4 = uint64(0x85EBCA77C2B2AE63)
_P5 = uint64(0x27D4EB2F165667C5)
_M32 = uint64(0xFFFFFFFF)


def new_state(capacity: int, main: int, prob: int, prot: int, width: int, hashes: int) -> Any:
    """A fresh state for ``capacity + 1`` node ids (one spare: a key enters before evicting).

    An int64 array where the functions are compiled, else a list (faster to index in Python).
    """
    n = capacity + 1
    off = HEADER
    layout = {}
    for name, size in (("nxt", n), ("prv", n), ("seg", n), ("pos", n * hashes), ("cnt", width)):
        layout[name] = off
        off += size
    st = np.zeros(off + n + 2, dtype=np.int64)
    st[HEAD : HEAD + 3] = -1
    st[TAIL : TAIL + 3] = -1
    sample = 32 * max(1, main)
    st[LEFT], st[SAMPLE], st[CAP], st[MAIN] = sample, sample, capacity, main
    st[PROB], st[PROT], st[WIDTH], st[HASHES] = prob, prot, width, hashes
    st[NXT], st[PRV], st[SEG] = layout["nxt"], layout["prv"], layout["seg"]
    st[POS], st[CNT], st[OUT] = layout["pos"], layout["cnt"], off
    return st if COMPILED else st.tolist()


@njit(cache=True)
def _rotl(x: np.uint64, r: int) -> np.uint64:
    return (x << uint64(r)) | (x >> uint64(64 - r))


@njit(cache=True)
def xxh64_u64(value: int, seed: int) -> np.uint64:
    """XXH64 of ``value``'s 8 little-endian bytes (two's complement) under ``seed``."""
    v = uint64(value)
    h = uint64(seed) + _P5 + uint64(8)
    k = _rotl(v * _P2, 31) * _P1
    h ^= k
    h = _rotl(h, 27) * _P1 + _P4
    h ^= h >> uint64(33)
    h *= _P2
    h ^= h >> uint64(29)
    h *= _P3
    h ^= h >> uint64(32)
    return h


@njit(cache=True)
def _unlink(st: np.ndarray, n: int) -> None:
    s = st[st[SEG] + n]
    p = st[st[PRV] + n]
    q = st[st[NXT] + n]
    if p >= 0:
        st[st[NXT] + p] = q
    else:
        st[HEAD + s] = q
    if q >= 0:
        st[st[PRV] + q] = p
    else:
        st[TAIL + s] = p
    st[LEN + s] -= 1


@njit(cache=True)
def _push(st: np.ndarray, n: int, s: int) -> None:
    h = st[HEAD + s]
    st[st[PRV] + n] = -1
    st[st[NXT] + n] = h
    if h >= 0:
        st[st[PRV] + h] = n
    else:
        st[TAIL + s] = n
    st[HEAD + s] = n
    st[st[SEG] + n] = s
    st[LEN + s] += 1


@njit(cache=True)
def _add(st: np.ndarray, n: int) -> None:
    # libCacheSim's minimalIncrementCBF increments every position (repeats twice)
    h = st[HASHES]
    base = st[POS] + n * h
    cnt = st[CNT]
    for j in range(h):
        st[cnt + st[base + j]] += 1


@njit(cache=True)
def _estimate(st: np.ndarray, n: int) -> int:
    h = st[HASHES]
    base = st[POS] + n * h
    cnt = st[CNT]
    low = st[cnt + st[base]]
    for j in range(1, h):
        v = st[cnt + st[base + j]]
        if v < low:
            low = v
    return low


@njit(cache=True)
def hit_node(st: np.ndarray, n: int) -> int:
    """A hit on node ``n``; returns a node the hit evicted (probation's overflow) or -1."""
    s = st[st[SEG] + n]
    _unlink(st, n)
    if s == 0:
        _push(st, n, 0)
        return -1
    _push(st, n, 2)
    lost = -1
    while st[LEN + 2] > st[PROT]:  # demote protected's LRU key to probation
        t = st[TAIL + 2]
        _unlink(st, t)
        _push(st, t, 1)
        while st[LEN + 1] > st[PROB]:  # probation over its size: evict its LRU key
            lost = st[TAIL + 1]
            _unlink(st, lost)
    _add(st, n)
    st[LEFT] -= 1
    if st[LEFT] == 0:
        st[LEFT] = st[SAMPLE]
        cnt = st[CNT]
        for j in range(st[WIDTH]):
            st[cnt + j] >>= 1
    return lost


@njit(cache=True)
def _main_insert(st: np.ndarray, n: int, nout: int) -> int:
    # SLRU insert: the first segment with room, else evict until main has room, probation
    if st[LEN + 1] < st[PROB]:
        _push(st, n, 1)
    elif st[LEN + 2] < st[PROT]:
        _push(st, n, 2)
    else:
        while st[LEN + 1] + st[LEN + 2] >= st[MAIN]:
            v = st[TAIL + 1] if st[LEN + 1] > 0 else st[TAIL + 2]
            _unlink(st, v)
            st[st[OUT] + nout] = v
            nout += 1
        _push(st, n, 1)
    return nout


@njit(cache=True)
def admit_node(st: np.ndarray, n: int, a: int, b: int) -> int:
    """Insert node ``n`` (filter digests ``a``, ``b``; ``b < 0``: ``a`` is an int key to hash).

    Returns -1 (nothing evicted), the one evicted node, or ``-1 - count`` with the
    evicted nodes in the buffer at ``st[OUT]``.
    """
    if b < 0:
        ua = xxh64_u64(a, 0x12345678) & _M32
        ub = xxh64_u64(a, 0x12344321) & _M32
    else:
        ua = uint64(a)
        ub = uint64(b)
    h = st[HASHES]
    base = st[POS] + n * h
    width = uint64(st[WIDTH])
    for j in range(h):
        st[base + j] = ((ua + uint64(j) * ub) & _M32) % width
    nout = 0
    while st[LEN] + st[LEN + 1] + st[LEN + 2] >= st[CAP]:
        if st[LEN] == 0:  # every window key went to main: main evicts
            v = st[TAIL + 1] if st[LEN + 1] > 0 else st[TAIL + 2]
            _unlink(st, v)
            st[st[OUT] + nout] = v
            nout += 1
            break
        w = st[TAIL]
        done = False
        _unlink(st, w)
        if st[LEN + 1] + st[LEN + 2] < st[MAIN]:
            nout = _main_insert(st, w, nout)
        else:
            r = st[TAIL + 1] if st[LEN + 1] > 0 else st[TAIL + 2]
            if _estimate(st, w) > _estimate(st, r):  # strictly: a tie keeps main's key
                _unlink(st, r)
                st[st[OUT] + nout] = r
                nout += 1
                nout = _main_insert(st, w, nout)
            else:
                st[st[OUT] + nout] = w
                nout += 1
                done = True
        _add(st, w)  # the filter sees every window victim
        if done:
            break
    _push(st, n, 0)
    _add(st, n)
    if nout == 0:
        return -1
    if nout == 1:
        return st[st[OUT]]
    return -1 - nout


@njit(cache=True)
def remove_node(st: np.ndarray, n: int) -> None:
    """Take node ``n`` out of its list (the filter keeps its counts, as libCacheSim's)."""
    _unlink(st, n)
