"""The policy interface, the registry of policies and libCacheSim's names for them."""

from __future__ import annotations

from collections.abc import Callable, Hashable

import numpy as np

from edgeintel.errors import ConfigError
from edgeintel.registry import Registry

__all__ = ["LIBCACHESIM_POLICIES", "POLICIES", "CachePolicy", "check_capacity", "make_policy"]


def check_capacity(capacity: int) -> int:
    """``capacity`` as an int, or a ConfigError naming what a capacity must be."""
    if isinstance(capacity, bool) or not isinstance(capacity, int | np.integer) or capacity < 1:
        raise ConfigError(f"cache capacity must be a positive number of entries, got {capacity!r}")
    return int(capacity)


class CachePolicy:
    """Base class: a bounded set of keys with a replacement rule."""

    name = "base"

    def __init__(self, capacity: int) -> None:
        self.capacity = check_capacity(capacity)

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
        """One trace request: True on a hit, else insert (evicting as needed).

        Policies override this with a fused version of ``lookup`` + ``admit`` (the
        hot path of a trace replay); it must behave exactly as the two calls.
        """
        if self.lookup(key):
            return True
        self.admit(key)
        return False


POLICIES: Registry[Callable[[int], CachePolicy]] = Registry("cache policy")

# libCacheSim's class names of the registered policies (the offline simulations run
# on libCacheSim itself for these: edgeintel.caching.policies.offline)
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
