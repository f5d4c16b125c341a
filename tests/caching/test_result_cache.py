"""Result cache: exact tier, H-kNN vote, eviction really removes from the ANN index, TTL."""

from __future__ import annotations

import numpy as np
import pytest

from edgeintel.caching.result_cache import ResultCache, ResultCacheConfig, content_key
from edgeintel.errors import ConfigError, DataError


def _v(*xs: float) -> np.ndarray:
    return np.array(xs, dtype=np.float32)


def test_exact_tier_by_content_hash() -> None:
    c = ResultCache(ResultCacheConfig(dim=2))
    x = np.arange(6, dtype=np.float32)
    assert not c.lookup(0.0, content=x).hit
    c.insert("cat", 0.0, content=x)
    hit = c.lookup(1.0, content=x.copy())
    assert hit.tier == "exact" and hit.result == "cat"
    assert not c.lookup(1.0, content=x + 1).hit
    # dtype and shape are part of the key
    assert content_key(x) != content_key(x.astype(np.float64))
    assert content_key(x) != content_key(x.reshape(2, 3))
    assert c.stats.exact_hits == 1 and c.stats.misses == 2


def test_vote_reuses_only_when_neighbours_agree() -> None:
    cfg = ResultCacheConfig(dim=2, k=5, min_votes=3, homogeneity=0.8, max_distance=1.0)
    c = ResultCache(cfg)
    for i, r in enumerate(["a", "a", "a", "b", "b"]):
        c.insert(r, 0.0, vector=_v(0.01 * i, 0.0))
    mixed = c.lookup(0.0, vector=_v(0.0, 0.0))
    assert not mixed.hit and mixed.votes == {"a": 3, "b": 2}  # 3/5 < 0.8
    # far neighbours do not vote: only the 'a' cluster is within the radius
    c2 = ResultCache(cfg)
    for i in range(3):
        c2.insert("a", 0.0, vector=_v(0.01 * i, 0.0))
    for i in range(2):
        c2.insert("b", 0.0, vector=_v(5.0 + i, 0.0))
    hit = c2.lookup(0.0, vector=_v(0.0, 0.0))
    assert hit.tier == "approx" and hit.result == "a" and hit.neighbours == 3
    # too few neighbours within the radius: a miss
    assert not c2.lookup(0.0, vector=_v(5.5, 0.0)).hit
    lenient = ResultCache(ResultCacheConfig(dim=2, k=5, min_votes=1, homogeneity=0.6))
    for i, r in enumerate(["a", "a", "a", "b", "b"]):
        lenient.insert(r, 0.0, vector=_v(0.01 * i, 0.0))
    assert lenient.lookup(0.0, vector=_v(0.0, 0.0)).result == "a"


def test_evicted_entries_leave_the_index() -> None:
    c = ResultCache(
        ResultCacheConfig(dim=2, capacity=2, k=3, min_votes=1, homogeneity=1.0, max_distance=0.5)
    )
    first = c.insert("old", 0.0, vector=_v(0.0, 0.0))
    c.insert("x", 0.0, vector=_v(10.0, 0.0))
    c.insert("y", 0.0, vector=_v(20.0, 0.0))  # evicts 'old' (LRU)
    assert first not in c and len(c) == 2 and c.index_size == 2
    assert c.stats.evictions == 1
    assert not c.lookup(1.0, vector=_v(0.0, 0.0)).hit  # the evicted vector cannot vote


def test_index_memory_stays_bounded_under_churn() -> None:
    rng = np.random.default_rng(0)
    c = ResultCache(ResultCacheConfig(dim=16, capacity=50))
    for i in range(60):
        c.insert(i, 0.0, vector=rng.normal(size=16))
    cap = c._index.capacity
    for i in range(2000):
        c.insert(i, 0.0, vector=rng.normal(size=16))
    assert len(c) == c.index_size == 50
    assert c._index.capacity == cap  # removed slots are reused


def test_ttl_expires_entries() -> None:
    c = ResultCache(ResultCacheConfig(dim=2, min_votes=1, ttl_s=10.0))
    c.insert("a", 0.0, content=b"abc", vector=_v(0.0, 0.0))
    assert c.lookup(5.0, content=b"abc").tier == "exact"
    assert c.lookup(5.0, vector=_v(0.0, 0.0)).tier == "approx"
    assert not c.lookup(11.0, content=b"abc", vector=_v(0.0, 0.0)).hit
    assert len(c) == 0 and c.index_size == 0 and c.stats.expirations == 2
    c.insert("b", 20.0, vector=_v(1.0, 1.0))
    assert c.expire(29.0) == 0 and c.expire(30.0) == 1 and c.index_size == 0


def test_stats_and_reuse_accuracy() -> None:
    c = ResultCache(ResultCacheConfig(dim=2, min_votes=1))
    assert c.stats.reuse_accuracy is None
    c.stats.judge(True)
    c.stats.judge(False)
    assert c.stats.reuse_accuracy == 0.5
    assert c.stats.to_json()["lookups"] == 0


def test_bad_inputs() -> None:
    with pytest.raises(ConfigError, match="capacity must be a positive integer"):
        ResultCacheConfig(dim=4, capacity=0)
    with pytest.raises(ConfigError, match="capacity must be a positive integer"):
        ResultCacheConfig(dim=4, capacity=-5)
    with pytest.raises(ConfigError, match="homogeneity"):
        ResultCacheConfig(dim=4, homogeneity=1.5)
    with pytest.raises(ConfigError, match="min_votes"):
        ResultCacheConfig(dim=4, k=2, min_votes=3)
    with pytest.raises(ConfigError, match="unknown cache policy"):
        ResultCacheConfig(dim=4, policy="nope")
    c = ResultCache(ResultCacheConfig(dim=4))
    c.insert(1, 0.0, vector=np.zeros(4))
    with pytest.raises(DataError, match="dim is 4"):
        c.insert(1, 0.0, vector=np.zeros(5))
    with pytest.raises(DataError, match="dim is 4"):
        c.lookup(0.0, vector=np.zeros(3))
