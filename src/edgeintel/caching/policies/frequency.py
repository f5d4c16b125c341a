"""LFU with O(1) frequency buckets (Shah, Mitra and Matani, 2010)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

from edgeintel.caching.policies.base import POLICIES, CachePolicy

__all__ = ["LFUCache"]


@POLICIES.register("lfu")
class LFUCache(CachePolicy):
    """Least frequently used; ties go to the least recently used of the least frequent.

    The paper's structure: one bucket (keys in recency order) per frequency in use,
    and the frequencies in use as a doubly linked list (``_up``/``_down``), so a hit
    (move to the next frequency), an insertion (frequency 1), an eviction (the
    oldest key of the lowest frequency) and a removal are each O(1); no operation
    scans the buckets.
    """

    name = "lfu"

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self._freq: dict[Hashable, int] = {}
        self._buckets: dict[int, OrderedDict[Hashable, None]] = {}
        self._up: dict[int, int] = {}  # frequency -> next higher frequency in use (0: none)
        self._down: dict[int, int] = {}  # frequency -> next lower frequency in use (0: none)
        self._min = 0  # lowest frequency in use (0: empty)

    def _link_above(self, f: int, g: int) -> None:
        """Make ``g`` (a new frequency) the successor of ``f`` (in use, or 0 for the bottom)."""
        up = self._up.get(f, 0) if f else self._min
        self._up[g] = up
        self._down[g] = f
        if up:
            self._down[up] = g
        if f:
            self._up[f] = g
        else:
            self._min = g

    def _unlink(self, f: int) -> None:
        """Drop frequency ``f`` (its bucket just emptied) from the list."""
        del self._buckets[f]
        up, down = self._up.pop(f), self._down.pop(f)
        if up:
            self._down[up] = down
        if down:
            self._up[down] = up
        else:
            self._min = up

    def lookup(self, key: Hashable) -> bool:
        f = self._freq.get(key)
        if f is None:
            return False
        self._bump(key, f)
        return True

    def _bump(self, key: Hashable, f: int) -> None:
        buckets = self._buckets
        g = f + 1
        nxt = buckets.get(g)
        if nxt is None:
            nxt = buckets[g] = OrderedDict()
            self._link_above(f, g)
        nxt[key] = None
        self._freq[key] = g
        bucket = buckets[f]
        del bucket[key]
        if not bucket:
            self._unlink(f)

    def _evict(self) -> Hashable:
        f = self._min
        bucket = self._buckets[f]
        victim = bucket.popitem(last=False)[0]
        if not bucket:
            self._unlink(f)
        del self._freq[victim]
        return victim

    def _insert(self, key: Hashable) -> None:
        self._freq[key] = 1
        b = self._buckets.get(1)
        if b is None:
            b = self._buckets[1] = OrderedDict()
            self._link_above(0, 1)
        b[key] = None

    def admit(self, key: Hashable) -> list[Hashable]:
        out = []
        while len(self._freq) >= self.capacity:
            out.append(self._evict())
        self._insert(key)
        return out

    def request(self, key: Hashable) -> bool:
        f = self._freq.get(key)
        if f is not None:
            self._bump(key, f)
            return True
        if len(self._freq) >= self.capacity:
            self._evict()
        self._insert(key)
        return False

    def discard(self, key: Hashable) -> bool:
        f = self._freq.pop(key, None)
        if f is None:
            return False
        bucket = self._buckets[f]
        del bucket[key]
        if not bucket:
            self._unlink(f)
        return True

    def __contains__(self, key: object) -> bool:
        return key in self._freq

    def __len__(self) -> int:
        return len(self._freq)
