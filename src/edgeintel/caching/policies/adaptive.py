"""Policies that split the cache into queues and adapt between them: ARC and S3-FIFO."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

from edgeintel.caching.policies.base import POLICIES, CachePolicy

__all__ = ["ARCCache", "S3FIFOCache"]


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

    def request(self, key: Hashable) -> bool:
        t1 = self.t1
        if key in t1:
            del t1[key]
            self.t2[key] = None
            return True
        t2 = self.t2
        if key in t2:
            t2.move_to_end(key)
            return True
        self.admit(key)
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
    queue if it was hit at least ``move_threshold`` times there (libCacheSim's
    default, 2), else to the ghost queue. Main-queue keys with a non-zero
    frequency (capped at 3) are reinserted with one less. A miss on a ghost key
    inserts into main. As in libCacheSim, until the cache first evicts, a new key
    that finds the small queue full goes straight to main (the cache is still
    filling; there is nothing to choose between yet).
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
        self._evicted = False  # has the cache evicted yet (is it past filling)?

    def lookup(self, key: Hashable) -> bool:
        f = self.freq.get(key)
        if f is None:
            return False
        if f < 3:
            self.freq[key] = f + 1
        return True

    def request(self, key: Hashable) -> bool:
        freq = self.freq
        f = freq.get(key)
        if f is not None:
            if f < 3:
                freq[key] = f + 1
            return True
        self.admit(key)
        return False

    def _evict_small(self, out: list[Hashable]) -> None:
        small, main, freq = self.small, self.main, self.freq
        while small:
            k, _ = small.popitem(last=False)
            if freq[k] >= self.move_threshold:
                main[k] = None
                freq[k] = 0
                if len(main) > self.capacity - self.small_cap:
                    self._evict_main(out)
                    return
            else:
                del freq[k]
                self.ghost[k] = None
                if len(self.ghost) > self.ghost_cap:
                    self.ghost.popitem(last=False)
                out.append(k)
                return

    def _evict_main(self, out: list[Hashable]) -> None:
        main, freq = self.main, self.freq
        while main:
            k, _ = main.popitem(last=False)
            f = freq[k]
            if f >= 1:
                main[k] = None
                freq[k] = f - 1
            else:
                del freq[k]
                out.append(k)
                return

    def admit(self, key: Hashable) -> list[Hashable]:
        out: list[Hashable] = []
        while len(self.freq) >= self.capacity:
            self._evicted = True
            if len(self.small) >= self.small_cap or not self.main:
                self._evict_small(out)
            else:
                self._evict_main(out)
        if key in self.ghost:
            del self.ghost[key]
            self.main[key] = None
        elif not self._evicted and len(self.small) >= self.small_cap:
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
