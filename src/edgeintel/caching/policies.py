"""Replacement policies behind one interface, plus Belady's OPT as the offline bound.

Every policy caches unit-size objects (``capacity`` counts objects) and offers
``lookup`` (a hit updates the policy's metadata, a miss changes nothing),
``admit`` (insert after a miss; returns the keys evicted to make room, so a
result cache can drop them from its ANN index too), ``discard`` (TTL expiry)
and ``request`` (lookup, then admit on a miss: what a trace replay does).

The in-process policies are ours because the runtime needs the eviction
callback on every policy; each one is checked against libcachesim's
implementation of the same name (``tests/caching/test_policies.py`` and
``benchmarks/bench_cache.py``): LRU, FIFO, LFU and SIEVE reproduce its hit
counts exactly, ARC and S3-FIFO within the 0.005 miss-ratio tolerance.
W-TinyLFU reproduces libcachesim's hit counts exactly when the main cache
splits evenly into its 1:4 segments (e.g. 500 or 1000 entries) and stays
within 0.01 otherwise (see :class:`WTinyLFUCache`).
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np
import xxhash

from edgeintel.errors import ConfigError
from edgeintel.registry import Registry

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
    "make_policy",
    "miss_ratio",
    "next_use",
    "opt_hits",
    "simulate",
]


def _check_capacity(capacity: int) -> int:
    if isinstance(capacity, bool) or not isinstance(capacity, int | np.integer) or capacity < 1:
        raise ConfigError(f"cache capacity must be a positive number of entries, got {capacity!r}")
    return int(capacity)


class CachePolicy:
    """Base class: a bounded set of keys with a replacement rule."""

    name = "base"

    def __init__(self, capacity: int) -> None:
        self.capacity = _check_capacity(capacity)

    def lookup(self, key: Hashable) -> bool:
        """True on a hit (and record the access); a miss changes nothing."""
        raise NotImplementedError

    def admit(self, key: Hashable) -> list[Hashable]:
        """Insert ``key`` (not cached) and return the keys evicted to make room."""
        raise NotImplementedError

    def discard(self, key: Hashable) -> bool:
        """Remove ``key`` if cached (e.g. on TTL expiry); True if it was there."""
        raise NotImplementedError

    def __contains__(self, key: object) -> bool:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def request(self, key: Hashable) -> bool:
        """One trace request: True on a hit, else insert (evicting as needed)."""
        if self.lookup(key):
            return True
        self.admit(key)
        return False


POLICIES: Registry[Callable[[int], CachePolicy]] = Registry("cache policy")

# libcachesim class names of the online policies this package evaluates.
LIBCACHESIM_POLICIES = {
    "lru": "LRU",
    "fifo": "FIFO",
    "lfu": "LFU",
    "arc": "ARC",
    "s3fifo": "S3FIFO",
    "sieve": "Sieve",
    "wtinylfu": "WTinyLFU",
}


def make_policy(name: str, capacity: int) -> CachePolicy:
    """Build the registered policy ``name`` holding at most ``capacity`` entries."""
    return POLICIES.get(name)(capacity)


@POLICIES.register("lru")
class LRUCache(CachePolicy):
    """Least recently used: an ordered dict, most recent at the end."""

    name = "lru"

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self._d: OrderedDict[Hashable, None] = OrderedDict()
        self._touch = self._d.move_to_end

    def lookup(self, key: Hashable) -> bool:
        if key in self._d:  # a test is cheaper than catching KeyError on a miss
            self._touch(key)
            return True
        return False

    def admit(self, key: Hashable) -> list[Hashable]:
        out = []
        while len(self._d) >= self.capacity:
            out.append(self._d.popitem(last=False)[0])
        self._d[key] = None
        return out

    def discard(self, key: Hashable) -> bool:
        return self._d.pop(key, 0) is None

    def __contains__(self, key: object) -> bool:
        return key in self._d

    def __len__(self) -> int:
        return len(self._d)


@POLICIES.register("fifo")
class FIFOCache(LRUCache):
    """First in, first out: hits do not reorder."""

    name = "fifo"

    def lookup(self, key: Hashable) -> bool:
        return key in self._d


@POLICIES.register("lfu")
class LFUCache(CachePolicy):
    """Least frequently used; ties go to the least recently used of the least frequent.

    Frequency buckets (``freq -> ordered keys``) make every operation O(1).
    """

    name = "lfu"

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self._freq: dict[Hashable, int] = {}
        self._buckets: dict[int, OrderedDict[Hashable, None]] = {}
        self._min = 0

    def lookup(self, key: Hashable) -> bool:
        f = self._freq.get(key)
        if f is None:
            return False
        bucket = self._buckets[f]
        del bucket[key]
        if not bucket:
            del self._buckets[f]
            if self._min == f:
                self._min = f + 1
        self._freq[key] = f + 1
        self._buckets.setdefault(f + 1, OrderedDict())[key] = None
        return True

    def admit(self, key: Hashable) -> list[Hashable]:
        out = []
        while len(self._freq) >= self.capacity:
            bucket = self._buckets[self._min]
            victim, _ = bucket.popitem(last=False)
            if not bucket:
                del self._buckets[self._min]
                self._min = min(self._buckets) if self._buckets else 0
            del self._freq[victim]
            out.append(victim)
        self._freq[key] = 1
        self._buckets.setdefault(1, OrderedDict())[key] = None
        self._min = 1
        return out

    def discard(self, key: Hashable) -> bool:
        f = self._freq.pop(key, None)
        if f is None:
            return False
        bucket = self._buckets[f]
        del bucket[key]
        if not bucket:
            del self._buckets[f]
            if self._min == f:
                self._min = min(self._buckets) if self._buckets else 0
        return True

    def __contains__(self, key: object) -> bool:
        return key in self._freq

    def __len__(self) -> int:
        return len(self._freq)


@POLICIES.register("sieve")
class SieveCache(CachePolicy):
    """SIEVE (Zhang et al., NSDI'24): a FIFO queue with a visited bit and a moving hand.

    The queue is kept as a doubly linked list over dicts; new keys enter at the
    head, the hand walks from the tail towards the head, clearing visited bits,
    and evicts the first unvisited key.
    """

    name = "sieve"

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self._visited: dict[Hashable, bool] = {}
        self._prev: dict[Hashable, Hashable | None] = {}  # towards the tail (older)
        self._next: dict[Hashable, Hashable | None] = {}  # towards the head (newer)
        self._head: Hashable | None = None
        self._tail: Hashable | None = None
        self._hand: Hashable | None = None

    def lookup(self, key: Hashable) -> bool:
        if key in self._visited:
            self._visited[key] = True
            return True
        return False

    def _unlink(self, key: Hashable) -> None:
        p, n = self._prev.pop(key), self._next.pop(key)
        if p is not None:
            self._next[p] = n
        else:
            self._tail = n
        if n is not None:
            self._prev[n] = p
        else:
            self._head = p
        del self._visited[key]

    def _evict(self) -> Hashable:
        obj = self._hand if self._hand is not None else self._tail
        while self._visited[obj]:
            self._visited[obj] = False
            obj = self._next[obj]
            if obj is None:
                obj = self._tail
        self._hand = self._next[obj]
        self._unlink(obj)
        return obj

    def admit(self, key: Hashable) -> list[Hashable]:
        out = []
        while len(self._visited) >= self.capacity:
            out.append(self._evict())
        self._visited[key] = False
        self._prev[key] = self._head
        self._next[key] = None
        if self._head is not None:
            self._next[self._head] = key
        else:
            self._tail = key
        self._head = key
        return out

    def discard(self, key: Hashable) -> bool:
        if key not in self._visited:
            return False
        if self._hand == key:
            self._hand = self._next[key]
        self._unlink(key)
        return True

    def __contains__(self, key: object) -> bool:
        return key in self._visited

    def __len__(self) -> int:
        return len(self._visited)


@POLICIES.register("arc")
class ARCCache(CachePolicy):
    """Adaptive Replacement Cache (Megiddo and Modha, FAST'03).

    ``T1`` holds keys seen once recently, ``T2`` keys seen at least twice;
    ghost lists ``B1``/``B2`` remember recent evictions and move the target
    size ``p`` of ``T1``.
    """

    name = "arc"

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self.p = 0.0
        self.t1: OrderedDict[Hashable, None] = OrderedDict()
        self.t2: OrderedDict[Hashable, None] = OrderedDict()
        self.b1: OrderedDict[Hashable, None] = OrderedDict()
        self.b2: OrderedDict[Hashable, None] = OrderedDict()

    def lookup(self, key: Hashable) -> bool:
        if key in self.t1:
            del self.t1[key]
            self.t2[key] = None
            return True
        if key in self.t2:
            self.t2.move_to_end(key)
            return True
        return False

    def _replace(self, in_b2: bool, out: list[Hashable]) -> None:
        if self.t1 and (len(self.t1) > self.p or (in_b2 and len(self.t1) == self.p)):
            k, _ = self.t1.popitem(last=False)
            self.b1[k] = None
        else:
            k, _ = self.t2.popitem(last=False)
            self.b2[k] = None
        out.append(k)

    def admit(self, key: Hashable) -> list[Hashable]:
        c = self.capacity
        out: list[Hashable] = []
        if key in self.b1:
            self.p = min(float(c), self.p + max(len(self.b2) / len(self.b1), 1.0))
            self._replace(False, out)
            del self.b1[key]
            self.t2[key] = None
            return out
        if key in self.b2:
            self.p = max(0.0, self.p - max(len(self.b1) / len(self.b2), 1.0))
            self._replace(True, out)
            del self.b2[key]
            self.t2[key] = None
            return out
        l1 = len(self.t1) + len(self.b1)
        if l1 == c:
            if len(self.t1) < c:
                self.b1.popitem(last=False)
                self._replace(False, out)
            else:
                out.append(self.t1.popitem(last=False)[0])
        elif l1 < c:
            total = l1 + len(self.t2) + len(self.b2)
            if total >= c:
                if total == 2 * c:
                    self.b2.popitem(last=False)
                self._replace(False, out)
        self.t1[key] = None
        return out

    def discard(self, key: Hashable) -> bool:
        for d in (self.t1, self.t2):
            if key in d:
                del d[key]
                return True
        return False

    def __contains__(self, key: object) -> bool:
        return key in self.t1 or key in self.t2

    def __len__(self) -> int:
        return len(self.t1) + len(self.t2)


@POLICIES.register("s3fifo")
class S3FIFOCache(CachePolicy):
    """S3-FIFO (Yang et al., SOSP'23): a small FIFO (10%), a main FIFO and a ghost FIFO.

    New keys enter the small queue; a key evicted from it moves to the main
    queue if it was hit at least ``move_threshold`` times there (libcachesim's
    default, 2), else to the ghost queue. Main-queue keys with a non-zero
    frequency (capped at 3) are reinserted with one less. A miss on a ghost key
    inserts into main.
    """

    name = "s3fifo"

    def __init__(
        self,
        capacity: int,
        small_ratio: float = 0.1,
        ghost_ratio: float = 0.9,
        move_threshold: int = 2,
    ) -> None:
        super().__init__(capacity)
        self.small_cap = max(1, int(capacity * small_ratio))
        self.ghost_cap = max(1, int(capacity * ghost_ratio))
        self.move_threshold = move_threshold
        self.small: OrderedDict[Hashable, None] = OrderedDict()
        self.main: OrderedDict[Hashable, None] = OrderedDict()
        self.ghost: OrderedDict[Hashable, None] = OrderedDict()
        self.freq: dict[Hashable, int] = {}

    def lookup(self, key: Hashable) -> bool:
        f = self.freq.get(key)
        if f is None:
            return False
        self.freq[key] = min(f + 1, 3)
        return True

    def _evict_small(self, out: list[Hashable]) -> None:
        while self.small:
            k, _ = self.small.popitem(last=False)
            if self.freq[k] >= self.move_threshold:
                self.main[k] = None
                self.freq[k] = 0
                if len(self.main) > self.capacity - self.small_cap:
                    self._evict_main(out)
                    return
            else:
                del self.freq[k]
                self.ghost[k] = None
                if len(self.ghost) > self.ghost_cap:
                    self.ghost.popitem(last=False)
                out.append(k)
                return

    def _evict_main(self, out: list[Hashable]) -> None:
        while self.main:
            k, _ = self.main.popitem(last=False)
            f = self.freq[k]
            if f >= 1:
                self.main[k] = None
                self.freq[k] = f - 1
            else:
                del self.freq[k]
                out.append(k)
                return

    def admit(self, key: Hashable) -> list[Hashable]:
        out: list[Hashable] = []
        while len(self.freq) >= self.capacity:
            if len(self.small) >= self.small_cap or not self.main:
                self._evict_small(out)
            else:
                self._evict_main(out)
        if key in self.ghost:
            del self.ghost[key]
            self.main[key] = None
        else:
            self.small[key] = None
        self.freq[key] = 0
        return out

    def discard(self, key: Hashable) -> bool:
        if self.freq.pop(key, None) is None:
            return False
        self.small.pop(key, None)
        self.main.pop(key, None)
        return True

    def __contains__(self, key: object) -> bool:
        return key in self.freq

    def __len__(self) -> int:
        return len(self.freq)


class _CountingBloom:
    """libcachesim's ``minimalIncrementCBF``: a counting Bloom filter read as a Count-Min sketch.

    Sized for ``entries`` keys at false-positive rate ``error``: ``-ln(error) /
    ln(2)^2`` counters per entry and ``ceil(ln 2 * that)`` hash functions
    (10 at 0.001), double hashing ``a + i * b`` (32-bit) where ``a`` and ``b``
    are XXH64 of the key's 8 bytes under libcachesim's two seeds (integer keys
    as themselves, others through ``hash``), so integer traces collide exactly
    as in libcachesim. ``add`` increments every counter of the key, the
    estimate is their minimum, ``halve`` ages all counters (integer halving).
    """

    def __init__(self, entries: int, error: float = 0.001) -> None:
        bpe = -math.log(error) / 0.480453013918201
        self.hashes = math.ceil(0.693147180559945 * bpe)
        self.n = max(math.ceil(bpe * entries), 2 * self.hashes)
        self.counts = [0] * self.n

    def _slots(self, key: Hashable) -> list[int]:
        k = key if isinstance(key, int) else hash(key)
        b = (k & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little")  # an int64 obj_id, as libcachesim
        a = xxhash.xxh64_intdigest(b, 0x12345678) & 0xFFFFFFFF  # its HASH_SEED0, HASH_SEED1
        d = xxhash.xxh64_intdigest(b, 0x12344321) & 0xFFFFFFFF
        n = self.n
        return [((a + i * d) & 0xFFFFFFFF) % n for i in range(self.hashes)]

    def add(self, key: Hashable) -> None:
        c = self.counts
        for x in self._slots(key):
            c[x] += 1

    def estimate(self, key: Hashable) -> int:
        c = self.counts
        return min(c[x] for x in self._slots(key))

    def halve(self) -> None:
        self.counts = [v >> 1 for v in self.counts]


@POLICIES.register("wtinylfu")
class WTinyLFUCache(CachePolicy):
    """W-TinyLFU (Einziger et al., 2017) with libcachesim's parameters and admission rule.

    A window LRU of ``int(capacity * window_ratio)`` entries (1%) takes every
    new key; the main cache (the rest) is a segmented LRU, probation 1/5 and
    protected 4/5 (libcachesim's ``seg-size=1:4``). When the cache is full the
    window's LRU key moves to main while main has room; otherwise it is
    admitted only if its sketch estimate is strictly above that of main's
    victim (probation's LRU key, or protected's if probation is empty), and
    the loser is evicted. The frequency sketch (:class:`_CountingBloom`, sized
    for the main cache at 0.1% error) counts insertions, hits in main and
    window victims, and halves every ``32 * main`` main hits (aging). Like
    libcachesim (and Caffeine) there is no doorkeeper. One deliberate
    difference: protected gets ``int(0.8 * main)`` slots and probation the
    rest, so a hit never evicts (libcachesim rounds both down, so for e.g. 99
    or 198 main entries its segments hold one entry less than main). Where
    ``0.2 * main`` is a whole number (capacity 500, 1000) the hit counts equal
    libcachesim's exactly; at 100 and 200 entries they differ by up to 0.01
    in miss ratio (measured on Zipf 0.6-1.0 traces). Below 100 entries
    libcachesim's window gets ``int(0.01 * capacity) = 0`` slots and it admits
    nothing (every request misses); ours keeps at least one window slot (none
    at capacity 1, a plain SLRU), so it stays a working W-TinyLFU there.
    """

    name = "wtinylfu"

    def __init__(self, capacity: int, window_ratio: float = 0.01) -> None:
        super().__init__(capacity)
        if not 0 <= window_ratio < 1:
            raise ConfigError(f"W-TinyLFU window_ratio must be in [0, 1), got {window_ratio}")
        self.window_cap = min(max(1, int(self.capacity * window_ratio)), self.capacity - 1)
        self.main_cap = self.capacity - self.window_cap
        self.protected_cap = int(self.main_cap * 0.8)
        self.probation_cap = self.main_cap - self.protected_cap
        self.window: OrderedDict[Hashable, None] = OrderedDict()
        self.probation: OrderedDict[Hashable, None] = OrderedDict()
        self.protected: OrderedDict[Hashable, None] = OrderedDict()
        self.sketch = _CountingBloom(self.main_cap)
        self._sample = 32 * self.main_cap
        self._main_hits = 0

    def _main_hit(self, key: Hashable) -> None:
        self.sketch.add(key)
        self._main_hits += 1
        if self._main_hits >= self._sample:
            self._main_hits = 0
            self.sketch.halve()

    def lookup(self, key: Hashable) -> bool:
        if key in self.window:
            self.window.move_to_end(key)
            return True
        if key in self.protected:
            self.protected.move_to_end(key)
            self._main_hit(key)
            return True
        if key in self.probation:
            del self.probation[key]
            self.protected[key] = None
            if len(self.protected) > self.protected_cap:  # demote protected's LRU key
                self.probation[self.protected.popitem(last=False)[0]] = None
            self._main_hit(key)
            return True
        return False

    def _main_len(self) -> int:
        return len(self.probation) + len(self.protected)

    def _main_insert(self, key: Hashable) -> None:
        if len(self.probation) < self.probation_cap or len(self.protected) >= self.protected_cap:
            self.probation[key] = None
        else:
            self.protected[key] = None

    def _main_victim(self) -> Hashable:
        return next(iter(self.probation or self.protected))

    def _main_evict(self) -> Hashable:
        seg = self.probation or self.protected
        return seg.popitem(last=False)[0]

    def _evict(self, out: list[Hashable]) -> None:
        while self.window:
            victim = next(iter(self.window))
            del self.window[victim]
            if self._main_len() < self.main_cap:
                self._main_insert(victim)
                self.sketch.add(victim)
                continue
            if self.sketch.estimate(victim) > self.sketch.estimate(self._main_victim()):
                out.append(self._main_evict())
                self._main_insert(victim)
            else:
                out.append(victim)
            self.sketch.add(victim)
            return
        out.append(self._main_evict())

    def admit(self, key: Hashable) -> list[Hashable]:
        out: list[Hashable] = []
        while len(self) >= self.capacity:
            self._evict(out)
        self.window[key] = None
        self.sketch.add(key)
        return out

    def discard(self, key: Hashable) -> bool:
        for seg in (self.window, self.probation, self.protected):
            if key in seg:
                del seg[key]
                return True
        return False

    def __contains__(self, key: object) -> bool:
        return key in self.window or key in self.probation or key in self.protected

    def __len__(self) -> int:
        return len(self.window) + len(self.probation) + len(self.protected)


def next_use(trace: Sequence[Hashable] | np.ndarray) -> np.ndarray:
    """Index of each request's next request of the same key (``len(trace)`` if none)."""
    n = len(trace)
    nxt = np.full(n, n, dtype=np.int64)
    last: dict[Any, int] = {}
    for i in range(n - 1, -1, -1):
        k = trace[i]
        k = k.item() if isinstance(k, np.generic) else k
        nxt[i] = last.get(k, n)
        last[k] = i
    return nxt


def opt_hits(trace: Sequence[Hashable] | np.ndarray, capacity: int) -> int:
    """Hits of Belady's OPT (evict the key used farthest in the future) on a trace.

    A key never used again is not admitted (it can only take a slot from a key
    that will be), which keeps OPT optimal for unit sizes. Lazy max-heap on the
    next-use index.
    """
    capacity = _check_capacity(capacity)
    if len(trace) == 0:
        raise ConfigError("the trace is empty; give at least one request")
    nxt = next_use(trace)
    n = len(trace)
    cached: dict[Any, int] = {}  # key -> its next use
    heap: list[tuple[int, Any]] = []
    hits = 0
    for i in range(n):
        k = trace[i]
        k = k.item() if isinstance(k, np.generic) else k
        if k in cached:
            hits += 1
        elif nxt[i] == n:
            continue
        elif len(cached) >= capacity:
            while True:
                neg, victim = heapq.heappop(heap)
                if cached.get(victim) == -neg:
                    break
            if -neg <= nxt[i]:  # the farthest cached key is needed no later: keep it
                heapq.heappush(heap, (neg, victim))
                continue
            del cached[victim]
        if nxt[i] == n:
            cached.pop(k, None)
            continue
        cached[k] = int(nxt[i])
        heapq.heappush(heap, (-int(nxt[i]), k))
    return hits


def simulate(policy: CachePolicy, trace: Sequence[Hashable] | np.ndarray) -> int:
    """Replay ``trace`` through ``policy``; returns the number of hits."""
    if len(trace) == 0:
        raise ConfigError("the trace is empty; give at least one request")
    req = policy.request
    items = trace.tolist() if isinstance(trace, np.ndarray) else trace
    return sum(req(k) for k in items)


def miss_ratio(name: str, trace: Sequence[Hashable] | np.ndarray, capacity: int) -> float:
    """Miss ratio of registered policy ``name`` (or ``"opt"``) on ``trace``."""
    if name == "opt":
        hits = opt_hits(trace, capacity)
    else:
        hits = simulate(make_policy(name, capacity), trace)
    return 1.0 - hits / len(trace)
