"""W-TinyLFU (Einziger, Friedman and Manes, 2017): window LRU, TinyLFU admission, segmented LRU.

The frequency filter is the paper's: a count-min sketch (4 rows, conservative
update) behind a doorkeeper Bloom filter that absorbs each key's first sighting
in an aging period, so one-hit wonders never reach the counters. Each cached key
carries its sketch positions (computed once, when the key is admitted), so hits,
duels and moves touch the counters without hashing again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

from xxhash import xxh64_intdigest

from edgeintel.caching.policies.base import POLICIES, CachePolicy
from edgeintel.errors import ConfigError

__all__ = ["FrequencySketch", "WTinyLFUCache", "key_bytes"]

Slots = tuple[int, int, int, int, int, int]


def key_bytes(key: Hashable) -> bytes:
    """Bytes that identify ``key`` the same way in every process (the sketch hashes these).

    Integers as 8 little-endian bytes (wider ones as their decimal digits), strings as
    UTF-8, bytes as they are; anything else through ``hash`` (Python's own ``hash`` of a
    string changes with ``PYTHONHASHSEED``, so strings do not go through it).
    """
    if type(key) is int:
        try:
            return key.to_bytes(8, "little", signed=True)
        except OverflowError:
            return str(key).encode()
    if isinstance(key, str):
        return key.encode()
    if isinstance(key, bytes):
        return key
    return hash(key).to_bytes(8, "little", signed=True)


class FrequencySketch:
    """TinyLFU's frequency filter: doorkeeper Bloom filter + count-min sketch.

    ``entries`` sizes the sketch: 4 rows of the next power of two >= ``entries``
    counters; the doorkeeper has ``doorkeeper_per_entry * entries`` one-byte cells
    (rounded up to a power of two) and 2 hash functions. ``add`` records a
    sighting (the first one in the doorkeeper, later ones in the counters, only
    those at the key's minimum: conservative update), ``estimate`` is the
    counters' minimum plus the doorkeeper's bit, ``age`` halves every counter and
    empties the doorkeeper (the paper's reset).
    """

    def __init__(self, entries: int, doorkeeper_per_entry: int = 128) -> None:
        if entries < 1:
            raise ConfigError(f"sketch entries must be >= 1, got {entries}")
        self.width = 1 << max(4, (entries - 1).bit_length())
        self.counts = [0] * (4 * self.width)
        self.door_size = 1 << max(6, (doorkeeper_per_entry * entries - 1).bit_length())
        self.door = bytearray(self.door_size)
        self._mask = self.width - 1
        self._door_mask = self.door_size - 1

    def slots(self, key: Hashable) -> Slots:
        """The 4 counter positions and 2 doorkeeper positions of ``key``."""
        if type(key) is int and -(1 << 63) <= key < 1 << 63:
            kb = key.to_bytes(8, "little", signed=True)
        else:
            kb = key_bytes(key)
        h = xxh64_intdigest(kb)  # two independent 64-bit hashes
        y = xxh64_intdigest(kb, 0x9E3779B9)
        m, w, d = self._mask, self.width, self._door_mask
        return (
            h & m,
            ((h >> 32) & m) + w,
            (y & m) + 2 * w,
            ((y >> 32) & m) + 3 * w,
            (h >> 16) & d,
            (y >> 16) & d,
        )

    def add(self, s: Slots) -> None:
        """Record one sighting of the key with slots ``s``."""
        door = self.door
        if not (door[s[4]] and door[s[5]]):
            door[s[4]] = door[s[5]] = 1
            return
        c = self.counts
        i, j, k, m = s[0], s[1], s[2], s[3]
        low = min(c[i], c[j], c[k], c[m])
        if c[i] == low:
            c[i] = low + 1
        if c[j] == low:
            c[j] = low + 1
        if c[k] == low:
            c[k] = low + 1
        if c[m] == low:
            c[m] = low + 1

    def estimate(self, s: Slots) -> int:
        """Estimated sightings of the key with slots ``s`` in the current period."""
        c, door = self.counts, self.door
        low = min(c[s[0]], c[s[1]], c[s[2]], c[s[3]])
        return low + 1 if door[s[4]] and door[s[5]] else low

    def age(self) -> None:
        """Halve every counter and empty the doorkeeper."""
        c = self.counts
        c[:] = [v >> 1 for v in c]  # in place: callers may hold the lists
        self.door[:] = bytes(self.door_size)


@POLICIES.register("wtinylfu")
class WTinyLFUCache(CachePolicy):
    """W-TinyLFU with libCacheSim's sizes and admission rule, and the paper's filter.

    A window LRU of ``int(capacity * window_ratio)`` entries (1%, at least one)
    takes every new key; the main cache (the rest) is a segmented LRU, probation
    1/5 and protected 4/5. When the cache is full the window's LRU key moves to
    main while main has room; otherwise it is admitted only if its estimate
    (:class:`FrequencySketch`) is strictly above that of main's victim
    (probation's LRU key, or protected's if probation is empty), and the loser is
    evicted. As in libCacheSim the filter sees insertions, hits in main and window
    victims, and ages every ``32 * main`` main hits. Differences from libCacheSim
    (measured in docs/caching.md): libCacheSim's filter is a 10-hash counting
    Bloom filter without a doorkeeper; protected gets ``int(0.8 * main)`` slots
    and probation the rest, so a hit never evicts (libCacheSim rounds both down
    and, where they fall one short of main, evicts on some hits); below 100
    entries libCacheSim's window has ``int(0.01 * capacity) = 0`` slots and it
    admits nothing, ours keeps one window slot.
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
        self.window: OrderedDict[Hashable, Slots] = OrderedDict()
        self.probation: OrderedDict[Hashable, Slots] = OrderedDict()
        self.protected: OrderedDict[Hashable, Slots] = OrderedDict()
        self.sketch = FrequencySketch(self.main_cap)
        self._counts, self._door = self.sketch.counts, self.sketch.door  # aged in place
        self._sample = 32 * self.main_cap
        self._left = self._sample  # main hits until the filter ages

    def _main_hit(self, s: Slots) -> None:
        self.sketch.add(s)
        self._left -= 1
        if not self._left:
            self._left = self._sample
            self.sketch.age()

    def lookup(self, key: Hashable) -> bool:
        if key in self.window:
            self.window.move_to_end(key)
            return True
        prot = self.protected
        s = prot.get(key)
        if s is not None:
            prot.move_to_end(key)
        else:
            s = self.probation.pop(key, None)
            if s is None:
                return False
            prot[key] = s
            if len(prot) > self.protected_cap:  # demote protected's LRU key
                k, v = prot.popitem(last=False)
                self.probation[k] = v
        self._main_hit(s)
        return True

    def request(self, key: Hashable) -> bool:
        # lookup + admit fused, with the filter's update inlined (the replay's hot path)
        window = self.window
        if key in window:
            window.move_to_end(key)
            return True
        prot = self.protected
        s = prot.get(key)
        if s is not None:
            prot.move_to_end(key)
        else:
            s = self.probation.pop(key, None)
            if s is None:
                self.admit(key)
                return False
            prot[key] = s
            if len(prot) > self.protected_cap:
                k, v = prot.popitem(last=False)
                self.probation[k] = v
        i, j, k2, m, a, b = s
        door = self._door
        if door[a] and door[b]:
            c = self._counts
            ci, cj, ck, cm = c[i], c[j], c[k2], c[m]
            low = min(ci, cj, ck, cm)
            if ci == low:
                c[i] = low + 1
            if cj == low:
                c[j] = low + 1
            if ck == low:
                c[k2] = low + 1
            if cm == low:
                c[m] = low + 1
        else:
            door[a] = door[b] = 1
        self._left -= 1
        if not self._left:
            self._left = self._sample
            self.sketch.age()
        return True

    def admit(self, key: Hashable) -> list[Hashable]:
        # the filter's update and estimates are inlined: this is the miss path of a replay
        out: list[Hashable] = []
        window, prob, prot, sk = self.window, self.probation, self.protected, self.sketch
        while len(window) + len(prob) + len(prot) >= self.capacity:
            if not window:
                out.append((prob or prot).popitem(last=False)[0])
                continue
            victim, s = window.popitem(last=False)
            c, door = self._counts, self._door
            i, j, k, m, a, b = s
            duel = len(prob) + len(prot) >= self.main_cap
            if duel:
                seg = prob or prot
                rival = next(iter(seg))
                r = seg[rival]
                ours = min(c[i], c[j], c[k], c[m]) + (1 if door[a] and door[b] else 0)
                theirs = min(c[r[0]], c[r[1]], c[r[2]], c[r[3]]) + (
                    1 if door[r[4]] and door[r[5]] else 0
                )
                if ours > theirs:
                    del seg[rival]
                    out.append(rival)
                    duel = False  # the victim goes to main, in place of the rival
                else:
                    out.append(victim)
            if not duel:
                if len(prob) < self.probation_cap or len(prot) >= self.protected_cap:
                    prob[victim] = s
                else:
                    prot[victim] = s
            if door[a] and door[b]:  # the filter sees the window victim
                ci, cj, ck, cm = c[i], c[j], c[k], c[m]
                low = min(ci, cj, ck, cm)
                if ci == low:
                    c[i] = low + 1
                if cj == low:
                    c[j] = low + 1
                if ck == low:
                    c[k] = low + 1
                if cm == low:
                    c[m] = low + 1
            else:
                door[a] = door[b] = 1
            if out:
                break
        s = sk.slots(key)
        window[key] = s
        sk.add(s)
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
