"""Replacement policies behind one registry, offline trace simulation and Belady's OPT.

Every policy caches unit-size objects (``capacity`` counts objects) and offers
``lookup`` (a hit updates the policy's metadata, a miss changes nothing),
``admit`` (insert after a miss; returns the keys evicted to make room, so a
result cache can drop them from its ANN index too), ``discard`` (TTL expiry)
and ``request`` (lookup, then admit on a miss: what a trace replay does).

The in-process policies serve the runtime (the edge server's result cache, the
device tier, the simulator's station caches), which needs the eviction callback
on every policy; offline trace simulation (``miss_ratios``: ``edgeintel
cache-sim``, the caching stage's comparison) runs on libCacheSim itself where it
has the policy. Families: ``recency`` (LRU, FIFO, SIEVE), ``frequency`` (LFU),
``adaptive`` (ARC, S3-FIFO), ``tinylfu`` (W-TinyLFU), ``offline`` (trace replay,
OPT). Each in-process policy is checked against libCacheSim's implementation of
the same name (``tests/caching/test_policies.py``, ``benchmarks/_peers_cache.py``).
"""

from __future__ import annotations

from edgeintel.caching.policies.adaptive import ARCCache, S3FIFOCache
from edgeintel.caching.policies.base import (
    LIBCACHESIM_POLICIES,
    POLICIES,
    CachePolicy,
    make_policy,
)
from edgeintel.caching.policies.frequency import LFUCache
from edgeintel.caching.policies.offline import (
    libcachesim_available,
    miss_ratio,
    miss_ratios,
    next_use,
    opt_hits,
    simulate,
    trace_ids,
)
from edgeintel.caching.policies.recency import FIFOCache, LRUCache, SieveCache
from edgeintel.caching.policies.tinylfu import WTinyLFUCache

__all__ = [
    "LIBCACHESIM_POLICIES",
    "POLICIES",
    "ARCCache",
    "CachePolicy",
    "FIFOCache",
    "LFUCache",
    "LRUCache",
    "S3FIFOCache",
    "SieveCache",
    "WTinyLFUCache",
    "libcachesim_available",
    "make_policy",
    "miss_ratio",
    "miss_ratios",
    "next_use",
    "opt_hits",
    "simulate",
    "trace_ids",
]
