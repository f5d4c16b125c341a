"""The Redis-shared result cache against a real ``redis-server`` on a free loopback port."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import numpy as np
import pytest

from edgeintel.caching.policies import make_policy
from edgeintel.caching.redis_cache import (
    RedisResultCache,
    check_redis_url,
    decode_outputs,
    encode_outputs,
)
from edgeintel.caching.result_cache import ResultCacheConfig
from edgeintel.caching.settings import CachingSettings
from edgeintel.errors import ConfigError, DataError
from edgeintel.tasks import TaskKind, make_task

redis = pytest.importorskip("redis", reason="the 'redis' extra is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_redis() -> tuple[subprocess.Popen[bytes], str]:
    """``redis-server`` on a free loopback port, no persistence; skip when absent."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed (make redis-server)")
    port = _free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    try:
        while True:
            try:
                client.ping()
                return proc, url
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    pytest.fail(f"redis-server did not start on port {port}")
                time.sleep(0.02)
    finally:
        client.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    proc, url = _start_redis()
    try:
        yield url
    finally:
        _stop(proc)


@pytest.fixture
def ns(redis_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace of its own per test; removed afterwards."""
    name = f"test:{request.node.name}"
    yield name
    RedisResultCache(redis_url, "cleaner", namespace=name).clear()


def _out(c: int, n: int = 4) -> dict[str, np.ndarray]:
    logits = np.zeros((1, n), np.float32)
    logits[0, c] = 1.0
    return {"logits": logits, "aux": np.arange(3, dtype=np.int64) + c}


def test_two_edge_servers_share_exact_hits(redis_url: str, ns: str) -> None:
    a = RedisResultCache(redis_url, "edge-a", namespace=ns)
    b = RedisResultCache(redis_url, "edge-b", namespace=ns)
    assert b.get("k1") is None and b.stats.misses == 1
    a.put("k1", _out(2))
    got = b.get("k1")
    assert got is not None and set(got) == {"logits", "aux"}
    np.testing.assert_array_equal(got["logits"], _out(2)["logits"])
    assert got["aux"].dtype == np.int64 and got["logits"].dtype == np.float32
    assert b.stats.exact_hits == 1 and b.stats.shared_hits == 1
    assert a.get("k1") is not None and a.stats.shared_hits == 0  # its own entry
    assert len(a) == len(b) == 1
    assert b.stats.to_json()["shared_hits"] == 1
    from edgeintel.runtime.seams import ResultCache as Seam

    assert isinstance(a, Seam)  # plugs into the runtime's cache seam


def test_entries_expire_after_their_ttl(redis_url: str, ns: str) -> None:
    a = RedisResultCache(redis_url, "edge-a", namespace=ns, ttl_s=1.5)  # s; room for a loaded CI
    b = RedisResultCache(redis_url, "edge-b", namespace=ns)
    a.put("k", _out(1))
    client = redis.Redis.from_url(redis_url)
    ttl_ms = client.pttl(f"{ns}:r:k")
    assert 0 < ttl_ms <= 1500
    assert b.get("k") is not None
    deadline = time.monotonic() + 10  # Redis expires it on its own clock; poll, no fixed sleep
    while client.exists(f"{ns}:r:k") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert b.get("k") is None and b.stats.misses == 1
    assert client.zcard(f"{ns}:lru") == 0  # the expired key also left the LRU order
    client.close()


def test_shared_tier_is_bounded_and_evicts_like_lru(redis_url: str, ns: str) -> None:
    """Two servers write and read one bounded tier; the survivors are exactly LRU's."""
    cap = 5
    servers = [
        RedisResultCache(redis_url, f"edge-{i}", namespace=ns, max_entries=cap) for i in (0, 1)
    ]
    lru = make_policy("lru", cap)
    resident: set[str] = set()
    rng = np.random.default_rng(0)
    for step in range(200):
        key = f"k{int(rng.zipf(1.3)) % 12}"
        cache = servers[step % 2]
        if cache.get(key) is None:
            assert key not in resident
            cache.put(key, _out(step % 4))
            for gone in lru.admit(key):
                resident.discard(str(gone))
            resident.add(key)
        else:
            assert key in resident
            lru.lookup(key)
        assert len(cache) <= cap
    client = redis.Redis.from_url(redis_url)
    stored = {k.decode().rsplit(":", 1)[1] for k in client.scan_iter(match=f"{ns}:r:*")}
    client.close()
    assert stored == resident and len(stored) == cap
    assert sum(s.stats.evictions for s in servers) > 0


def test_approximate_tier_is_local_to_its_server(redis_url: str, ns: str) -> None:
    cfg = ResultCacheConfig(dim=4, capacity=16, k=3, min_votes=2, homogeneity=1.0)
    a = RedisResultCache(redis_url, "edge-a", namespace=ns, approx=cfg, clock=lambda: 0.0)
    b = RedisResultCache(redis_url, "edge-b", namespace=ns, approx=cfg, clock=lambda: 0.0)
    v = np.array([1.0, 0.0, 0.0, 0.0], np.float32)
    a.put("x1", _out(3), features=v)
    a.put("x2", _out(3), features=v + 0.01)
    near = v + 0.005
    got = a.get("x3", features=near)  # a new input close to two stored ones: both vote 3
    assert got is not None and int(np.argmax(got["logits"])) == 3
    assert a.stats.approx_hits == 1
    assert b.get("x3", features=near) is None  # b's approximate tier is its own
    a.put("x4", _out(1), features=v - 0.01)  # now the neighbours disagree: no reuse
    assert a.get("x5", features=near) is None


def test_outputs_round_trip_without_pickle() -> None:
    out = {"y": np.arange(6, dtype=np.float16).reshape(2, 3)}
    back = decode_outputs(encode_outputs(out))
    assert back["y"].dtype == np.float16 and back["y"].shape == (2, 3)
    with pytest.raises(DataError, match="dtype object"):
        encode_outputs({"y": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(DataError, match="at least one output"):
        encode_outputs({})


def test_bad_settings_and_unreachable_server(redis_url: str) -> None:
    for bad in ("http://localhost:6379", "redis://", "redis://host:99999/0", "unix://"):
        with pytest.raises(ConfigError, match="redis_url"):
            check_redis_url(bad)
    with pytest.raises(ValueError, match="redis_url must start with"):
        CachingSettings.model_validate({"result_cache": {"redis_url": "mysql://x"}})
    with pytest.raises(ValueError, match="backend"):
        CachingSettings.model_validate({"result_cache": {"backend": "memcached"}})
    ok = CachingSettings.model_validate(
        {"result_cache": {"backend": "redis", "redis_url": redis_url, "exact_capacity": 7}}
    )
    cache = RedisResultCache.from_settings(ok.result_cache, "edge-a", dim=4)
    assert cache.max_entries == 7 and cache.get("nothing", np.zeros(4, np.float32)) is None
    with pytest.raises(ConfigError, match="max_entries"):
        RedisResultCache(redis_url, "edge-a", max_entries=0)
    with pytest.raises(ConfigError, match="ttl_s"):
        RedisResultCache(redis_url, "edge-a", ttl_s=-1)
    with pytest.raises(ConfigError, match="cannot reach Redis"):
        RedisResultCache(f"redis://127.0.0.1:{_free_port()}/0", "edge-a")


def test_a_redis_outage_is_a_counted_miss_not_a_crash() -> None:
    proc, url = _start_redis()
    try:
        cache = RedisResultCache(url, "edge-a", namespace="outage")
        cache.put("k", _out(0))
        assert cache.get("k") is not None
    finally:
        _stop(proc)
    assert cache.get("k") is None  # the server is gone: a miss
    cache.put("k2", _out(1))  # dropped, no exception
    assert cache.stats.backend_errors == 2
    assert cache.stats.misses == 1 and cache.stats.exact_hits == 1


def _feed(cache: RedisResultCache, outputs: list[np.ndarray]) -> dict[str, np.ndarray] | None:
    v = np.array([1.0, 0.0], np.float32)
    for i, out in enumerate(outputs):
        cache.put(f"k{i}", {"y": out}, features=v + 0.01 * i)
    return cache.get("new", features=v)  # a new input (no exact hit) near the three stored


def test_the_local_tier_votes_by_the_task_kinds_rule(redis_url: str, ns: str) -> None:
    """Like the in-process cache: regression values agree within the tolerance, an anomaly
    score is never reused from a neighbour, no kind compares arg-max labels."""
    cfg = ResultCacheConfig(dim=2, capacity=16, k=3, min_votes=3, max_distance=1.0)

    def cache(name: str, task: TaskKind | None = None) -> RedisResultCache:
        return RedisResultCache(
            redis_url,
            "edge-a",
            namespace=f"{ns}:{name}",
            approx=cfg,
            task=task,
            clock=lambda: 0.0,
        )

    values = [np.array([[20.0]]), np.array([[20.2]]), np.array([[20.4]])]
    assert _feed(cache("none"), values) is None  # as labels: three different outputs
    hit = _feed(cache("reg", make_task("regression", tolerance=0.25)), values)
    assert hit is not None and float(hit["y"][0, 0]) == pytest.approx(20.2)  # agrees with all
    assert _feed(cache("tight", make_task("regression", tolerance=0.1)), values) is None
    recon = [np.array([[0.1, 0.9]]), np.array([[0.2, 0.8]]), np.array([[0.3, 0.7]])]
    assert _feed(cache("labels"), recon) is not None  # as labels they agree
    anomaly = cache("anomaly", make_task("anomaly", threshold=1.0))
    assert _feed(anomaly, recon) is None and anomaly.get("k0") is not None  # exact tier only
    assert anomaly.stats.approx_hits == 0


def test_the_runtime_hands_the_model_kind_to_the_redis_backend(redis_url: str) -> None:
    from edgeintel.runtime.wiring import server_cache

    settings = CachingSettings.model_validate(
        {
            "result_cache": {
                "backend": "redis",
                "redis_url": redis_url,
                "k": 3,
                "min_votes": 3,
                "max_distance": 1.0,
            }
        }
    ).result_cache
    values = [np.array([[20.0]]), np.array([[20.2]]), np.array([[20.4]])]
    try:
        cache = server_cache(settings, "edge-a", task=make_task("regression", tolerance=0.25))
        hit = _feed(cache, values)
        assert hit is not None and float(hit["y"][0, 0]) == pytest.approx(20.2)
        assert cache.stats.approx_hits == 1
    finally:
        RedisResultCache(redis_url, "cleaner").clear()
