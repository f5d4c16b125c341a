"""W-TinyLFU (Einziger, Friedman and Manes, 2017) as libCacheSim builds it, rule for rule.

libCacheSim's ``WTinyLFU.c`` (default ``main-cache=SLRU,window-size=0.01``): a window
LRU of ``int(capacity * 0.01)`` entries takes every new key; the main cache (the rest)
is an SLRU of two segments, probation ``int(1/5 * main)`` and protected
``int(4/5 * main)`` entries; the frequency filter is its ``minimalIncrementCBF``, a
counting Bloom filter of ``ceil(bpe * main)`` counters and 10 hashes for a 0.001 error
(:func:`sketch_size`, :func:`sketch_slots`). Reproducing its hashes (XXH64 of the key's 8
bytes, seeds 0x12345678 and 0x12344321) and its order of updates gives libCacheSim's hits
exactly. The state machine (:mod:`._tinylfu_core`) is compiled with numba where the ``fast``
extra is installed: in Python each main hit's 10 counter updates alone cost about 0.5 us.
"""

from __future__ import annotations

import math
from collections.abc import Hashable

import numpy as np
from xxhash import xxh64_intdigest

from edgeintel.caching.policies.base import POLICIES, CachePolicy
from edgeintel.errors import ConfigError

__all__ = ["WTinyLFUCache", "key_bytes", "sketch_size", "sketch_slots"]

# the counters one key touches (HASHES of them, positions may repeat as in libCacheSim)
Slots = tuple[int, ...]

_SEED0, _SEED1 = 0x12345678, 0x12344321  # libCacheSim's HASH_SEED0 / HASH_SEED1
_M32 = 0xFFFFFFFF


def key_bytes(key: Hashable) -> bytes:
    """Bytes that identify ``key`` the same way in every process (the filter hashes these).

    Integers as 8 little-endian bytes, two's complement (libCacheSim's ``obj_id_t``; wider
    ones as their decimal digits), strings as UTF-8, bytes as they are; anything else
    through ``hash`` (Python's ``hash`` of a string changes with ``PYTHONHASHSEED``, so
    strings do not go through it).
    """
    if isinstance(key, int | np.integer):
        if -(1 << 63) <= key < 1 << 64:
            return (int(key) & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little")
        return str(key).encode()
    if isinstance(key, str):
        return key.encode()
    if isinstance(key, bytes):
        return key
    return hash(key).to_bytes(8, "little", signed=True)


def sketch_size(entries: int, error: float = 0.001) -> tuple[int, int]:
    """(counters, hashes) of libCacheSim's ``minimalIncrementCBF`` for ``entries`` and ``error``.

    ``bpe = -ln(error) / ln(2)^2`` counters per entry, ``ceil(bpe * entries)`` counters
    (at least twice the hashes) and ``ceil(ln(2) * bpe)`` hashes: 14.38 and 10 at 0.001.
    """
    if entries < 1:
        raise ConfigError(f"sketch entries must be >= 1, got {entries}")
    if not 0 < error < 1:
        raise ConfigError(f"sketch error must be in (0, 1), got {error}")
    bpe = -math.log(error) / 0.480453013918201
    hashes = math.ceil(0.693147180559945 * bpe)
    return max(math.ceil(bpe * entries), 2 * hashes), hashes


def sketch_slots(key: Hashable, width: int, hashes: int = 10) -> Slots:
    """The filter counters of ``key``: ``(a + i * b) mod 2^32 mod width`` for ``i < hashes``.

    ``a`` and ``b`` are the XXH64 digests of :func:`key_bytes` under libCacheSim's seeds,
    truncated to 32 bits (its ``unsigned int``); positions may repeat, as there.
    """
    kb = key_bytes(key)
    a = xxh64_intdigest(kb, _SEED0) & _M32
    b = xxh64_intdigest(kb, _SEED1) & _M32
    return tuple(((a + i * b) & _M32) % width for i in range(hashes))


@POLICIES.register("wtinylfu")
class WTinyLFUCache(CachePolicy):
    """W-TinyLFU with libCacheSim's structure and order of updates (its hits, exactly).

    * window: an LRU of ``int(capacity * window_ratio)`` slots that takes every new key.
      As in libCacheSim it is not held at that size: before the first eviction it holds
      everything, and each eviction takes window victims until one loses its duel;
    * eviction: the window's LRU key moves to main while main has room; otherwise it
      duels main's victim (probation's LRU key, else protected's) and is admitted only if
      its estimate is strictly higher (the loser leaves, the winner's rival is evicted and
      the next window victim duels); the filter counts each window victim once;
    * main: SLRU, a key enters the first segment with room (probation first), a probation
      hit promotes to protected, protected's LRU key is demoted to probation's MRU end;
      where ``int(main/5) + int(4*main/5)`` is one short of main, probation can overflow
      by one and a promotion then evicts probation's LRU key (libCacheSim does the same);
      this policy returns such a key from the next ``admit``;
    * the filter (:func:`sketch_size` for ``main`` entries) counts insertions, main
      hits and window victims, and halves after every ``32 * main`` main hits.

    The one difference: below 100 entries libCacheSim's window has 0 slots and it caches
    nothing; this policy keeps one window slot there (and, below 6 entries, one
    probation slot).
    """

    name = "wtinylfu"

    def __init__(self, capacity: int, window_ratio: float = 0.01) -> None:
        super().__init__(capacity)
        if not 0 <= window_ratio < 1:
            raise ConfigError(f"W-TinyLFU window_ratio must be in [0, 1), got {window_ratio}")
        from edgeintel.caching.policies import _tinylfu_core as core  # imports numba: lazily

        cap = self.capacity
        self.window_cap = max(1, int(cap * window_ratio)) if cap > 1 else 1
        self.main_cap = cap - self.window_cap
        main = self.main_cap
        self.probation_cap = max(1, int(1 / 5 * main)) if main else 0
        self.protected_cap = min(int(4 / 5 * main), main - self.probation_cap)
        self.sketch_width, self.sketch_hashes = sketch_size(max(1, main))
        self._st = core.new_state(
            cap, main, self.probation_cap, self.protected_cap, self.sketch_width, self.sketch_hashes
        )
        self._out = int(self._st[core.OUT])
        self._hit, self._admit, self._remove = core.hit_node, core.admit_node, core.remove_node
        self._hash_ints = core.COMPILED  # the compiled core hashes int keys itself
        self._ids: dict[Hashable, int] = {}  # cached key -> node id
        self._keys: list[Hashable] = [None] * (cap + 1)  # node id -> key
        self._free = list(range(cap, -1, -1))  # node ids not in use
        self._lost: list[Hashable] = []  # keys a promotion evicted, for the next admit

    def _hit_evicted(self, n: int) -> None:
        key = self._keys[n]
        del self._ids[key]
        self._free.append(n)
        self._lost.append(key)

    def lookup(self, key: Hashable) -> bool:
        n = self._ids.get(key)
        if n is None:
            return False
        lost = self._hit(self._st, n)
        if lost >= 0:
            self._hit_evicted(lost)
        return True

    def request(self, key: Hashable) -> bool:
        # lookup + admit fused (the replay's hot path)
        n = self._ids.get(key)
        if n is not None:
            lost = self._hit(self._st, n)
            if lost >= 0:
                self._hit_evicted(lost)
            return True
        self.admit(key)
        return False

    def admit(self, key: Hashable) -> list[Hashable]:
        out, self._lost = self._lost, []
        ids, keys, free = self._ids, self._keys, self._free
        n = free.pop()
        ids[key] = n
        keys[n] = key
        if self._hash_ints and type(key) is int and -(1 << 63) <= key < 1 << 63:
            r = self._admit(self._st, n, key, -1)  # hashed in the compiled core
        else:
            kb = key_bytes(key)
            a = xxh64_intdigest(kb, _SEED0) & _M32
            r = self._admit(self._st, n, a, xxh64_intdigest(kb, _SEED1) & _M32)
        if r == -1:
            return out
        gone = [r] if r >= 0 else [int(v) for v in self._st[self._out : self._out - 1 - r]]
        for v in gone:
            k = keys[v]
            del ids[k]
            keys[v] = None
            free.append(v)
            out.append(k)
        return out

    def discard(self, key: Hashable) -> bool:
        n = self._ids.pop(key, None)
        if n is None:
            if key in self._lost:  # evicted by a promotion, not yet reported: drop it
                self._lost.remove(key)
            return False
        self._remove(self._st, n)
        self._keys[n] = None
        self._free.append(n)
        return True

    def __contains__(self, key: object) -> bool:
        return key in self._ids

    def __len__(self) -> int:
        return len(self._ids)
