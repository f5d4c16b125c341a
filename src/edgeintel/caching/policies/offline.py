"""Offline trace simulation: miss ratios on libCacheSim itself, ours as the fallback; Belady's OPT.

``miss_ratios`` replays a trace through each named policy on libCacheSim (the
field's reference simulator, in C: the ``cachesim`` extra) for the policies it
has, and through our in-process policies for the rest: a policy libCacheSim
lacks, W-TinyLFU below 100 entries and S3-FIFO below 20 (libCacheSim's versions
degenerate there: ``LIBCACHESIM_MIN_CAPACITY``), or every policy when libcachesim is not installed
(then one warning line names the extra). The trace goes to libCacheSim as an
``oracleGeneral`` binary file (24 bytes a request) and each cache gets a hash
table sized for the trace, not libCacheSim's default 2^24 buckets.
"""

from __future__ import annotations

import heapq
import logging
import tempfile
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeintel.caching.policies.base import (
    LIBCACHESIM_POLICIES,
    POLICIES,
    CachePolicy,
    check_capacity,
    make_policy,
)
from edgeintel.errors import ConfigError
from edgeintel.extras import hint

__all__ = [
    "LIBCACHESIM_MIN_CAPACITY",
    "ORACLE_GENERAL",
    "libcachesim_available",
    "miss_ratio",
    "miss_ratios",
    "next_use",
    "opt_hits",
    "simulate",
    "trace_ids",
    "write_oracle_general",
]

log = logging.getLogger(__name__)

ORACLE_GENERAL = np.dtype(
    [("time", "<u4"), ("obj_id", "<u8"), ("obj_size", "<u4"), ("next_access", "<i8")]
)
"""libCacheSim's ``oracleGeneral`` record: clock time, object id, size, next access vtime."""

_warned = False


def libcachesim_available() -> bool:
    """True when the ``libcachesim`` package (the ``cachesim`` extra) imports."""
    try:
        import libcachesim  # noqa: F401
    except ImportError:
        return False
    return True


def trace_ids(trace: Sequence[Hashable] | np.ndarray) -> np.ndarray:
    """The trace as int64 ids: integer arrays as they are, other keys 1, 2, ... by first request.

    (libCacheSim numbers a text trace's string keys the same way, so its W-TinyLFU, whose
    filter hashes the id, sees the same ids from either.)
    """
    if isinstance(trace, np.ndarray) and trace.dtype.kind in "iu":
        return trace.astype(np.int64, copy=False)
    ids: dict[Any, int] = {}
    return np.fromiter(
        (ids.setdefault(k, len(ids) + 1) for k in trace), dtype=np.int64, count=len(trace)
    )


def write_oracle_general(ids: np.ndarray, path: Path) -> None:
    """Write integer keys ``ids`` as an oracleGeneral trace (unit sizes, no next-access times)."""
    rec = np.zeros(len(ids), dtype=ORACLE_GENERAL)
    rec["time"] = np.arange(len(ids), dtype=np.uint32)
    rec["obj_id"] = ids.astype(np.uint64)
    rec["obj_size"] = 1
    rec["next_access"] = -1
    rec.tofile(path)


# below these capacities libCacheSim's policy degenerates: W-TinyLFU's 1% window rounds to 0
# slots (it admits nothing); S3-FIFO's 10% small queue holds no unit object below 20 entries
# (``obj_size >= size`` is refused, so nothing is cached) and aborts the process below 10
LIBCACHESIM_MIN_CAPACITY = {"wtinylfu": 100, "s3fifo": 20}


def _libcachesim_runs(names: list[str], capacity: int) -> list[str]:
    """The names among ``names`` that libCacheSim simulates as we define them."""
    return [
        n
        for n in names
        if n in LIBCACHESIM_POLICIES and capacity >= LIBCACHESIM_MIN_CAPACITY.get(n, 1)
    ]


def _on_libcachesim(ids: np.ndarray, capacity: int, names: list[str]) -> dict[str, float]:
    import libcachesim as lcs

    # a hash table for what a cache holds (its objects and ghosts, at most ~2x capacity), not
    # libCacheSim's default 2^24 buckets, whose allocation costs several times the replay
    hashpower = min(24, max(10, (min(len(ids), 4 * capacity + 16) - 1).bit_length() + 1))
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="edgeintel-trace-") as tmp:
        path = Path(tmp) / "trace.oracleGeneral"
        write_oracle_general(ids, path)
        reader = lcs.TraceReader(
            str(path), lcs.TraceType.ORACLE_GENERAL_TRACE, lcs.ReaderInitParam(ignore_obj_size=True)
        )
        for n in names:
            cache = getattr(lcs, LIBCACHESIM_POLICIES[n])(cache_size=capacity, hashpower=hashpower)
            out[n] = float(cache.process_trace(reader)[0])
        del reader  # its close() frees twice (libcachesim 0.3.5): let the binding free it
    return out


def miss_ratios(
    trace: Sequence[Hashable] | np.ndarray,
    capacity: int,
    names: Sequence[str],
    engine: str = "auto",
) -> dict[str, float]:
    """Miss ratio of each policy in ``names`` (``"opt"``: Belady's OPT) on ``trace``.

    ``engine``: ``"auto"`` (libCacheSim where it has the policy, else ours),
    ``"edgeintel"`` (ours only) or ``"libcachesim"`` (as auto, but a missing
    libcachesim is an error naming the extra instead of a fallback).
    """
    global _warned
    capacity = check_capacity(capacity)
    if len(trace) == 0:
        raise ConfigError("the trace is empty; give at least one request")
    if engine not in ("auto", "edgeintel", "libcachesim"):
        raise ConfigError(f"engine must be auto, edgeintel or libcachesim, got {engine!r}")
    for n in names:
        if n != "opt":
            POLICIES.get(n)
    ids = trace_ids(trace)
    on_lcs: list[str] = []
    if engine != "edgeintel":
        if libcachesim_available():
            on_lcs = _libcachesim_runs(list(names), capacity)
        elif engine == "libcachesim":
            from edgeintel.extras import require

            require("libcachesim", "trace simulation on libCacheSim")
        elif not _warned:
            _warned = True
            log.warning("%s; using edgeintel's policies", hint("libcachesim", "libCacheSim"))
    ratios = _on_libcachesim(ids, capacity, on_lcs) if on_lcs else {}
    n_req = len(ids)
    for n in names:
        if n in ratios:
            continue
        hits = opt_hits(ids, capacity) if n == "opt" else simulate(make_policy(n, capacity), ids)
        ratios[n] = 1.0 - hits / n_req
    return {n: ratios[n] for n in names}


def miss_ratio(name: str, trace: Sequence[Hashable] | np.ndarray, capacity: int) -> float:
    """Miss ratio of registered policy ``name`` (or ``"opt"``) on ``trace``: ``miss_ratios``."""
    return miss_ratios(trace, capacity, [name])[name]


def simulate(policy: CachePolicy, trace: Sequence[Hashable] | np.ndarray) -> int:
    """Replay ``trace`` through the in-process ``policy``; returns the number of hits."""
    if len(trace) == 0:
        raise ConfigError("the trace is empty; give at least one request")
    req = policy.request
    items = trace.tolist() if isinstance(trace, np.ndarray) else trace
    hits = 0
    for k in items:
        if req(k):
            hits += 1
    return hits


def next_use(trace: Sequence[Hashable] | np.ndarray) -> np.ndarray:
    """Index of each request's next request of the same key (``len(trace)`` if none)."""
    ids = trace_ids(trace)
    n = len(ids)
    nxt = np.full(n, n, dtype=np.int64)
    if n == 0:
        return nxt
    order = np.lexsort((np.arange(n), ids))  # by key, then by position
    same = ids[order[1:]] == ids[order[:-1]]
    nxt[order[:-1][same]] = order[1:][same]
    return nxt


def opt_hits(trace: Sequence[Hashable] | np.ndarray, capacity: int) -> int:
    """Hits of Belady's OPT (evict the key used farthest in the future) on a trace.

    A key never used again is not admitted (it can only take a slot from a key
    that will be), which keeps OPT optimal for unit sizes. Lazy max-heap on the
    next-use index.
    """
    capacity = check_capacity(capacity)
    if len(trace) == 0:
        raise ConfigError("the trace is empty; give at least one request")
    ids = trace_ids(trace)
    n = len(ids)
    nxt_l = next_use(ids).tolist()
    keys = ids.tolist()
    cached: dict[int, int] = {}  # key -> its next use
    heap: list[tuple[int, int]] = []
    push, pop = heapq.heappush, heapq.heappop
    hits = 0
    for i in range(n):
        k = keys[i]
        t = nxt_l[i]
        if k in cached:
            hits += 1
        elif t == n:
            continue
        elif len(cached) >= capacity:
            while True:
                neg, victim = pop(heap)
                if cached.get(victim) == -neg:
                    break
            if -neg <= t:  # the farthest cached key is needed no later: keep it
                push(heap, (neg, victim))
                continue
            del cached[victim]
        if t == n:
            cached.pop(k, None)
            continue
        cached[k] = t
        push(heap, (-t, k))
    return hits
