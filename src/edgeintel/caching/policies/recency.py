"""Recency policies: LRU, FIFO and SIEVE."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

from edgeintel.caching.policies.base import POLICIES, CachePolicy

__all__ = ["FIFOCache", "LRUCache", "SieveCache"]


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

    def request(self, key: Hashable) -> bool:
        d = self._d
        if key in d:
            self._touch(key)
            return True
        if len(d) >= self.capacity:
            d.popitem(last=False)
        d[key] = None
        return False

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

    def request(self, key: Hashable) -> bool:
        d = self._d
        if key in d:
            return True
        if len(d) >= self.capacity:
            d.popitem(last=False)
        d[key] = None
        return False


@POLICIES.register("sieve")
class SieveCache(CachePolicy):
    """SIEVE (Zhang et al., NSDI'24): a FIFO queue with a visited bit and a moving hand.

    The queue is a doubly linked list over dicts; new keys enter at the head, the
    hand walks from the tail towards the head, clearing visited bits, and evicts
    the first unvisited key. A hit only sets the key's bit (O(1), no reordering).
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
        visited, nxt = self._visited, self._next
        obj = self._hand if self._hand is not None else self._tail
        while visited[obj]:
            visited[obj] = False
            obj = nxt[obj]
            if obj is None:
                obj = self._tail
        self._hand = nxt[obj]
        self._unlink(obj)
        return obj

    def _push(self, key: Hashable) -> None:
        self._visited[key] = False
        head = self._head
        self._prev[key] = head
        self._next[key] = None
        if head is not None:
            self._next[head] = key
        else:
            self._tail = key
        self._head = key

    def admit(self, key: Hashable) -> list[Hashable]:
        out = []
        while len(self._visited) >= self.capacity:
            out.append(self._evict())
        self._push(key)
        return out

    def request(self, key: Hashable) -> bool:
        visited = self._visited
        if key in visited:
            visited[key] = True
            return True
        if len(visited) >= self.capacity:
            self._evict()
        self._push(key)
        return False

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
