"""A result cache shared by several edge servers through Redis.

Same seam as the runtime's in-process cache: ``get(key, features=None)``
returns a stored ``{output name: array}`` or None, ``put(key, outputs,
features=None)`` stores one, ``stats`` counts what happened.

* **exact tier, in Redis, shared by every server**: ``key`` is the content
  hash of an input (``content_key``/the runtime's ``tensor_key``), so an
  input computed at one edge server is a hit at every other (a device handed
  over to a neighbouring station, the same content requested in two cells).
  Each entry is a Redis hash (the outputs as an ``.npz`` blob loaded with
  ``allow_pickle=False``, and the id of the server that wrote it) with a TTL
  (``PEXPIRE``). The size is bounded by *our* policy, not Redis'
  ``maxmemory``: a sorted set holds every key scored by its last access on
  the Redis server's clock (``TIME``), and the put script evicts the least
  recently used keys beyond ``max_entries`` in the same atomic step. That is
  exact LRU over all servers by entry count, independent of how the Redis
  server is configured (``maxmemory``/``allkeys-lru`` is server-wide,
  byte-based and sampled, and would also evict other applications' keys).
* **approximate tier, local to each server**: a ``ResultCache`` (usearch
  HNSW, H-kNN vote) over ``features``. It stays in process because plain
  Redis has no nearest-neighbour search (that needs the RediSearch module,
  which Debian's ``redis-server`` lacks), a kNN scan over the network would
  cost more than the small models it saves, and the devices of one server
  see the same scenes (locality): the approximate reuse is local, the exact
  reuse is what crosses servers. The neighbours vote by the model's task
  kind's agreement rule (``task``: ``TaskKind.same``, e.g. regression values
  within the tolerance; without a kind, equal arg-max labels: a classifier),
  exactly as the in-process cache does (``caching.answers``); a hit returns
  the stored outputs most neighbours agree with. A kind whose prediction needs
  the input itself (an anomaly score) gets no approximate tier.

Redis must be reachable when the cache is built (a one-line ``ConfigError``
otherwise); if it fails later, a lookup counts as a miss and a store is
dropped, both counted in ``stats.backend_errors`` and logged once.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeintel.caching.answers import answer_rule, approximate_allowed, cached_answer
from edgeintel.caching.result_cache import CacheStats, ResultCache, ResultCacheConfig
from edgeintel.caching.settings import check_redis_url
from edgeintel.errors import ConfigError, DataError
from edgeintel.extras import require

if TYPE_CHECKING:
    from edgeintel.caching.settings import ResultCacheSettings
    from edgeintel.tasks import TaskKind

__all__ = [
    "RedisResultCache",
    "SharedCacheStats",
    "check_redis_url",
    "decode_outputs",
    "ping_redis",
]

_log = logging.getLogger(__name__)

# KEYS[1] entry hash, KEYS[2] LRU sorted set; ARGV: member, blob, writer, ttl ms (0: none),
# max entries, key prefix. Returns the number of keys evicted.
_CLOCK = """
-- microseconds on the Redis server's clock, strictly after the most recent access
-- (several accesses in one microsecond keep their order)
local function clock(order)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local top = redis.call('ZRANGE', order, -1, -1, 'WITHSCORES')
  if top[2] and tonumber(top[2]) >= now then now = tonumber(top[2]) + 1 end
  return now
end
"""

_PUT = (
    _CLOCK
    + """
local now = clock(KEYS[2])
redis.call('HSET', KEYS[1], 'o', ARGV[2], 'w', ARGV[3])
local ttl = tonumber(ARGV[4])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  -- members last touched more than a TTL ago have expired: drop them from the order
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. string.format('%.0f', now - ttl * 1000))
end
redis.call('ZADD', KEYS[2], now, ARGV[1])
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[5])
local evicted = 0
if over > 0 then
  local old = redis.call('ZPOPMIN', KEYS[2], over)
  for i = 1, #old, 2 do
    evicted = evicted + redis.call('DEL', ARGV[6] .. old[i])
  end
end
return evicted
"""
)

# KEYS[1] entry hash, KEYS[2] LRU sorted set; ARGV[1] member. Returns {blob, writer} or nil.
_GET = (
    _CLOCK
    + """
local v = redis.call('HMGET', KEYS[1], 'o', 'w')
if not v[1] then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return false
end
redis.call('ZADD', KEYS[2], 'XX', clock(KEYS[2]), ARGV[1])
return v
"""
)


def ping_redis(url: str, timeout_s: float = 1.0) -> None:
    """Raise a one-line ``ConfigError`` naming ``url`` unless a Redis server answers there
    within ``timeout_s`` (``edgeintel validate`` checks ``backend: redis`` with it)."""
    redis = require("redis", "the Redis result cache")
    client = redis.Redis.from_url(
        check_redis_url(url), socket_timeout=timeout_s, socket_connect_timeout=timeout_s
    )
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        reason = " ".join(str(exc).split())[:160]
        raise ConfigError(f"cannot reach Redis at {url} within {timeout_s:g} s: {reason}") from None
    finally:
        client.close()


def encode_outputs(outputs: Mapping[str, np.ndarray]) -> bytes:
    """``{name: array}`` as an uncompressed ``.npz`` blob (no pickled objects allowed)."""
    if not outputs:
        raise DataError("a cached result needs at least one output array")
    arrays = {}
    for name, a in outputs.items():
        arr = np.asarray(a)
        if arr.dtype.hasobject:
            raise DataError(f"output {name!r} has dtype object; cache numeric arrays only")
        arrays[name] = arr
    buf = io.BytesIO()
    savez: Any = np.savez  # numpy's stub types every keyword as allow_pickle's bool
    savez(buf, allow_pickle=False, **arrays)
    return buf.getvalue()


def decode_outputs(blob: bytes) -> dict[str, np.ndarray]:
    """Inverse of ``encode_outputs`` (``allow_pickle=False``: a blob cannot run code)."""
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        return {name: z[name] for name in z.files}


@dataclass
class SharedCacheStats(CacheStats):
    """``CacheStats`` plus what sharing adds: hits on entries another server stored."""

    shared_hits: int = 0
    backend_errors: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            **super().to_json(),
            "shared_hits": self.shared_hits,
            "backend_errors": self.backend_errors,
        }


class RedisResultCache:
    """Exact tier in Redis shared by all edge servers; approximate tier local (optional).

    ``server`` names this edge server (kept with each entry it stores, so hits
    on other servers' entries are counted). ``max_entries`` bounds the shared
    exact tier (LRU over all servers), ``ttl_s`` its entries' lifetime in
    seconds (None: no expiry). ``approx`` (a ``ResultCacheConfig``) adds the
    local approximate tier over ``features``, whose neighbours vote by ``task``'s
    agreement rule (None: equal labels); a ``task`` that needs the input (anomaly)
    keeps the exact tier only. ``clock`` gives the local tier's time (s).
    """

    def __init__(
        self,
        url: str,
        server: str,
        *,
        max_entries: int = 4096,
        ttl_s: float | None = None,
        namespace: str = "edgeintel:results",
        approx: ResultCacheConfig | None = None,
        task: TaskKind | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_redis_url(url)
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ConfigError(f"max_entries must be a positive integer, got {max_entries!r}")
        if ttl_s is not None and not ttl_s > 0:
            raise ConfigError(f"ttl_s must be > 0 seconds, got {ttl_s}")
        if not server:
            raise ConfigError("server must name this edge server")
        redis = require("redis", "the Redis result cache")
        self.url, self.server, self.namespace = url, server, namespace
        self.max_entries, self.ttl_s = max_entries, ttl_s
        self.stats = SharedCacheStats()
        self._client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        try:
            self._client.ping()
        except redis.RedisError as exc:
            raise ConfigError(f"cannot reach Redis at {url}: {exc}") from None
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._put = self._client.register_script(_PUT)
        self._get = self._client.register_script(_GET)
        self._order = f"{namespace}:lru"
        self._prefix = f"{namespace}:r:"
        self.task = task
        self._approx = (
            ResultCache(approx, answer_rule(task))
            if approx is not None and approximate_allowed(task)
            else None
        )
        self._clock = clock
        self._warned = False

    @classmethod
    def from_settings(
        cls,
        settings: ResultCacheSettings,
        server: str,
        dim: int | None = None,
        task: TaskKind | None = None,
    ) -> RedisResultCache:
        """The cache ``settings.caching.result_cache`` describes (``backend: redis``).

        ``redis_url``; ``exact_capacity`` bounds the shared tier; ``ttl_s``; with
        ``dim`` (the feature vectors' length) a local approximate tier with the
        settings' vote parameters, voting by ``task``'s rule.
        """
        approx = None if dim is None else ResultCacheConfig.from_settings(settings, dim)
        return cls(
            settings.redis_url,
            server,
            max_entries=settings.exact_capacity,
            ttl_s=settings.ttl_s,
            approx=approx,
            task=task,
        )

    # ----------------------------------------------------------------- helpers

    def _backend_failed(self, what: str, exc: BaseException) -> None:
        self.stats.backend_errors += 1
        if not self._warned:
            _log.warning(
                "Redis result cache at %s: %s failed (%s); treated as a miss", self.url, what, exc
            )
            self._warned = True

    @property
    def enabled(self) -> bool:
        return True

    def __len__(self) -> int:
        """Entries in the shared exact tier (all servers)."""
        return int(self._client.zcard(self._order))

    def clear(self) -> None:
        """Remove this namespace's entries from Redis (every server's)."""
        keys = list(self._client.scan_iter(match=f"{self.namespace}:*", count=1000))
        if keys:
            self._client.delete(*keys)

    # ----------------------------------------------------------------- seam

    def get(self, key: str, features: np.ndarray | None = None) -> dict[str, np.ndarray] | None:
        """The exact tier by ``key`` (shared), then the local approximate tier by ``features``."""
        try:
            found = self._get(keys=[self._prefix + key, self._order], args=[key])
        except self._errors as exc:
            self._backend_failed("get", exc)
            found = None
        if found:
            blob, writer = found
            self.stats.exact_hits += 1
            if writer is not None and writer.decode() != self.server:
                self.stats.shared_hits += 1
            return decode_outputs(blob)
        if features is not None and self._approx is not None:
            hit = self._approx.lookup(self._clock(), vector=features)
            if hit.hit:
                self.stats.approx_hits += 1
                return {k: v.copy() for k, v in hit.result.outputs.items()}
        self.stats.misses += 1
        return None

    def put(
        self, key: str, outputs: Mapping[str, np.ndarray], features: np.ndarray | None = None
    ) -> None:
        """Store a computed result in the shared exact tier (and the local approximate tier)."""
        blob = encode_outputs(outputs)
        ttl_ms = 0 if self.ttl_s is None else max(1, round(self.ttl_s * 1000))
        try:
            evicted = self._put(
                keys=[self._prefix + key, self._order],
                args=[key, blob, self.server, ttl_ms, self.max_entries, self._prefix],
            )
            self.stats.evictions += int(evicted)
        except self._errors as exc:
            self._backend_failed("put", exc)
        self.stats.inserts += 1
        if features is not None and self._approx is not None:
            self._approx.insert(cached_answer(outputs, self.task), self._clock(), vector=features)

    def close(self) -> None:
        self._client.close()
