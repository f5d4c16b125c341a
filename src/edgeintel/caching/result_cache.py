"""Computation redundancy on the edge server: a result cache shared by the devices it serves.

Two tiers, looked up in order:

* **exact**: keyed by the SHA-256 of the input's bytes; a hit is a repeat of
  an input already computed (a re-sent frame, a retried request).
* **approximate**: keyed by a feature vector (a downsampled input or an
  embedding) in an HNSW index (usearch, one thread). A lookup takes the ``k``
  nearest cached vectors within ``max_distance`` (squared L2) and reuses the
  most common result only when at least ``min_votes`` neighbours answered and
  its share of them reaches ``homogeneity``, FoggyCache's H-kNN rule
  (MobiCom'18); otherwise it is a miss and the device's own result is inserted.
  A neighbour votes for every candidate result it agrees with by the task kind's
  rule (``same``: equal labels by default; values within a tolerance for
  regression; the same side of the threshold for anomaly scores), so the winner
  is the neighbours' result most of them agree with.

Both tiers are bounded (``capacity`` entries each) and evict through a
registered replacement policy (``policies.POLICIES``); an evicted or expired
entry is removed from the ANN index (``usearch.Index.remove``), so it can
never vote again, and its slot is reused (the index's memory stays bounded).
Time is passed in (``now``, seconds) so the runtime (wall clock) and the
simulator (simulated clock) share the same object.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeintel.caching.policies import POLICIES, CachePolicy, make_policy
from edgeintel.errors import ConfigError, DataError

if TYPE_CHECKING:
    from edgeintel.caching.settings import ResultCacheSettings

__all__ = [
    "CacheStats",
    "Lookup",
    "ResultCache",
    "ResultCacheConfig",
    "agreement_votes",
    "content_key",
]


def agreement_votes(results: Sequence[Any], same: Callable[[Any, Any], bool]) -> dict[Any, int]:
    """Per distinct result (first-seen order): how many of ``results`` agree with it by
    ``same`` (with ``==`` this is the count of each result)."""
    distinct: list[Any] = []
    for r in results:
        if not any(r == d for d in distinct):
            distinct.append(r)
    return {d: sum(bool(same(r, d)) for r in results) for d in distinct}


def content_key(data: bytes | np.ndarray) -> str:
    """SHA-256 hex digest of an input's bytes (arrays: dtype, shape and C-order bytes)."""
    if isinstance(data, np.ndarray):
        h = hashlib.sha256(f"{data.dtype.str}{data.shape}".encode())
        h.update(np.ascontiguousarray(data).tobytes())
        return h.hexdigest()
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ResultCacheConfig:
    """Capacities in entries, TTL in seconds, distances in squared L2 of the feature vectors."""

    dim: int
    capacity: int = 1024
    exact_capacity: int = 4096
    k: int = 5
    min_votes: int = 2
    homogeneity: float = 0.8
    max_distance: float = float("inf")
    ttl_s: float | None = None
    policy: str = "lru"

    def __post_init__(self) -> None:
        for name in ("dim", "capacity", "exact_capacity", "k", "min_votes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"result cache {name} must be a positive integer, got {v!r}")
        if self.min_votes > self.k:
            raise ConfigError(f"min_votes ({self.min_votes}) cannot exceed k ({self.k})")
        if not 0 < self.homogeneity <= 1:
            raise ConfigError(f"homogeneity must be in (0, 1], got {self.homogeneity}")
        if not self.max_distance > 0:
            raise ConfigError(f"max_distance must be > 0, got {self.max_distance}")
        if self.ttl_s is not None and not self.ttl_s > 0:
            raise ConfigError(f"ttl_s must be > 0 seconds, got {self.ttl_s}")
        POLICIES.get(self.policy)

    @classmethod
    def from_settings(cls, settings: ResultCacheSettings, dim: int) -> ResultCacheConfig:
        """The cache a scenario's ``settings.caching.result_cache`` describes, for feature
        vectors of ``dim`` values (the caching stage and the runtime's servers share it)."""
        return cls(
            dim=dim,
            capacity=settings.capacity,
            exact_capacity=settings.exact_capacity,
            k=settings.k,
            min_votes=settings.min_votes,
            homogeneity=settings.homogeneity,
            max_distance=settings.max_distance,
            ttl_s=settings.ttl_s,
            policy=settings.policy,
        )


@dataclass
class CacheStats:
    """Counters of one cache; ``judge`` records whether a reused result was right."""

    exact_hits: int = 0
    approx_hits: int = 0
    misses: int = 0
    inserts: int = 0
    evictions: int = 0
    expirations: int = 0
    reused_judged: int = 0
    reused_correct: int = 0

    @property
    def lookups(self) -> int:
        return self.exact_hits + self.approx_hits + self.misses

    @property
    def hit_ratio(self) -> float:
        return (self.exact_hits + self.approx_hits) / max(1, self.lookups)

    @property
    def reuse_accuracy(self) -> float | None:
        return self.reused_correct / self.reused_judged if self.reused_judged else None

    def judge(self, correct: bool) -> None:
        self.reused_judged += 1
        self.reused_correct += bool(correct)

    def to_json(self) -> dict[str, Any]:
        return {
            "lookups": self.lookups,
            "exact_hits": self.exact_hits,
            "approx_hits": self.approx_hits,
            "misses": self.misses,
            "hit_ratio": round(self.hit_ratio, 4),
            "inserts": self.inserts,
            "evictions": self.evictions,
            "expirations": self.expirations,
            "reuse_accuracy": None if (acc := self.reuse_accuracy) is None else round(acc, 4),
        }


@dataclass(frozen=True)
class Lookup:
    """A lookup's answer: ``result`` is None on a miss; ``tier`` is exact, approx or miss."""

    result: Any
    tier: str
    votes: dict[Any, int] = field(default_factory=dict)
    neighbours: int = 0

    @property
    def hit(self) -> bool:
        return self.tier != "miss"


@dataclass
class _Entry:
    result: Any
    expires: float


class ResultCache:
    """Exact + approximate result cache with bounded capacity, eviction and TTL.

    ``same`` is the agreement rule of the approximate tier's vote (the task kind's
    ``TaskKind.same``; ``None``: results are counted by equality).
    """

    def __init__(
        self, config: ResultCacheConfig, same: Callable[[Any, Any], bool] | None = None
    ) -> None:
        from usearch.index import Index

        self.config = config
        self.same = same
        self.stats = CacheStats()
        self._index = Index(ndim=config.dim, metric="l2sq", dtype="f32")
        self._approx: dict[int, _Entry] = {}
        self._approx_policy: CachePolicy = make_policy(config.policy, config.capacity)
        self._exact: dict[str, _Entry] = {}
        self._exact_policy: CachePolicy = make_policy(config.policy, config.exact_capacity)
        self._next_id = 0

    # ----------------------------------------------------------------- helpers

    def _expiry(self, now: float) -> float:
        return float("inf") if self.config.ttl_s is None else now + self.config.ttl_s

    def _vector(self, vector: np.ndarray) -> np.ndarray:
        v = np.asarray(vector, dtype=np.float32).reshape(-1)
        if v.size != self.config.dim:
            raise DataError(
                f"feature vector has {v.size} values but this cache's dim is {self.config.dim}"
            )
        if not np.isfinite(v).all():
            bad = np.flatnonzero(~np.isfinite(v))
            raise DataError(
                f"result cache: the request input's feature vector ({v.size} values, a "
                f"downsampled copy of the input) has {len(bad)} NaN or infinite "
                f"value(s), first at position {int(bad[0])}; the request's input tensor "
                "must be finite"
            )
        return v

    def _drop_approx(self, ids: list[Any]) -> None:  # ids are ints
        if ids:
            self._index.remove(np.asarray(ids, dtype=np.uint64))
            for i in ids:
                del self._approx[i]

    def __len__(self) -> int:
        return len(self._approx)

    @property
    def exact_size(self) -> int:
        return len(self._exact)

    @property
    def index_size(self) -> int:
        """Vectors the ANN index holds (equals ``len(self)``: evictions really remove)."""
        return len(self._index)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._approx

    # ----------------------------------------------------------------- API

    def lookup(
        self,
        now: float,
        content: bytes | np.ndarray | None = None,
        vector: np.ndarray | None = None,
    ) -> Lookup:
        """Exact tier by ``content``, then approximate tier by ``vector``; a miss otherwise."""
        if content is not None:
            ckey = content_key(content)
            e = self._exact.get(ckey)
            if e is not None:
                if e.expires > now:
                    self._exact_policy.lookup(ckey)
                    self.stats.exact_hits += 1
                    return Lookup(e.result, "exact")
                del self._exact[ckey]
                self._exact_policy.discard(ckey)
                self.stats.expirations += 1
        if vector is not None and self._approx:
            v = self._vector(vector)
            found = self._index.search(v, min(self.config.k, len(self._approx)), threads=1)
            keys = [int(k) for k in np.atleast_1d(found.keys)]
            dists = np.atleast_1d(found.distances)
            voters, expired = [], []
            for key, d in zip(keys, dists, strict=True):
                e = self._approx.get(key)
                if e is None:
                    continue
                if e.expires <= now:
                    expired.append(key)
                elif d <= self.config.max_distance:
                    voters.append(key)
            for key in expired:
                self._approx_policy.discard(key)
            self._drop_approx(expired)
            self.stats.expirations += len(expired)
            results = [self._approx[key].result for key in voters]
            votes = (
                dict(Counter(results)) if self.same is None else agreement_votes(results, self.same)
            )
            if len(voters) >= self.config.min_votes:
                (winner, count), *_ = sorted(votes.items(), key=lambda kv: (-kv[1], str(kv[0])))
                if count / len(voters) >= self.config.homogeneity:
                    for key in voters:
                        self._approx_policy.lookup(key)
                    self.stats.approx_hits += 1
                    return Lookup(winner, "approx", dict(votes), len(voters))
            self.stats.misses += 1
            return Lookup(None, "miss", dict(votes), len(voters))
        self.stats.misses += 1
        return Lookup(None, "miss")

    def insert(
        self,
        result: Any,
        now: float,
        content: bytes | np.ndarray | None = None,
        vector: np.ndarray | None = None,
    ) -> int | None:
        """Store a computed result under its content hash and/or feature vector.

        Returns the approximate-tier entry id (None without a vector).
        """
        expires = self._expiry(now)
        if content is not None:
            ckey = content_key(content)
            if ckey in self._exact:
                self._exact[ckey] = _Entry(result, expires)
            else:
                for old in self._exact_policy.admit(ckey):
                    del self._exact[str(old)]
                    self.stats.evictions += 1
                self._exact[ckey] = _Entry(result, expires)
        if vector is None:
            self.stats.inserts += 1
            return None
        v = self._vector(vector)
        evicted = self._approx_policy.admit(self._next_id)
        self._drop_approx(evicted)
        self.stats.evictions += len(evicted)
        entry_id = self._next_id
        self._next_id += 1
        self._index.add(entry_id, v, threads=1)
        self._approx[entry_id] = _Entry(result, expires)
        self.stats.inserts += 1
        return entry_id

    def expire(self, now: float) -> int:
        """Remove every entry whose TTL has passed; returns how many."""
        gone = [k for k, e in self._approx.items() if e.expires <= now]
        for k in gone:
            self._approx_policy.discard(k)
        self._drop_approx(gone)
        gone_exact = [c for c, e in self._exact.items() if e.expires <= now]
        for c in gone_exact:
            self._exact_policy.discard(c)
            del self._exact[c]
        self.stats.expirations += len(gone) + len(gone_exact)
        return len(gone) + len(gone_exact)
