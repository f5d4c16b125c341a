"""Replacement policies: hand-worked traces, libcachesim/cachetools as references, OPT as bound."""

from __future__ import annotations

import itertools
from functools import cache

import numpy as np
import pytest

from edgeintel.caching.policies import (
    LIBCACHESIM_POLICIES,
    POLICIES,
    make_policy,
    miss_ratio,
    opt_hits,
    simulate,
)
from edgeintel.errors import ConfigError


def _zipf_trace(n_items: int, n: int, alpha: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_items + 1) ** alpha
    return rng.choice(n_items, size=n, p=p / p.sum())


def _hits_by_step(name: str, trace: str, capacity: int) -> list[bool]:
    pol = make_policy(name, capacity)
    return [pol.request(k) for k in trace]


def test_lru_hand_worked() -> None:
    # a b a c b a with 2 slots: a,b miss; a hit; c evicts b; b evicts a; a evicts c
    assert _hits_by_step("lru", "abacba", 2) == [False, False, True, False, False, False]


def test_lfu_hand_worked() -> None:
    # a b a c b a with 2 slots: a(1) b(1) a(2) hit; c evicts b (freq 1); b evicts c; a hit
    assert _hits_by_step("lfu", "abacba", 2) == [False, False, True, False, False, True]
    # ties among the least frequent go to the least recently used
    pol = make_policy("lfu", 2)
    for k in "ab":
        pol.request(k)
    assert pol.admit("c") == ["a"]


def test_fifo_and_sieve_hand_worked() -> None:
    # FIFO ignores the hit on a: d evicts a
    assert _hits_by_step("fifo", "abcad a", 3)[-1] is False
    # SIEVE keeps the visited a: d evicts b (hand skips a, clears its bit)
    pol = make_policy("sieve", 3)
    for k in "abca":
        pol.request(k)
    assert pol.admit("d") == ["b"]
    assert "a" in pol and "b" not in pol


def test_admit_returns_evicted_and_discard_removes() -> None:
    for name in POLICIES.names():
        pol = make_policy(name, 3)
        evicted = []
        for k in range(10):
            if not pol.lookup(k):
                evicted += pol.admit(k)
        assert len(pol) == 3, name
        assert sorted(evicted + [k for k in range(10) if k in pol]) == list(range(10)), name
        kept = next(k for k in range(10) if k in pol)
        assert pol.discard(kept) and kept not in pol and len(pol) == 2, name
        assert not pol.discard(kept)


def _brute_force_opt(trace: tuple[int, ...], capacity: int) -> int:
    """Most hits any replacement (with optional bypass) can get: exhaustive search."""

    @cache
    def best(i: int, cached: frozenset[int]) -> int:
        if i == len(trace):
            return 0
        k = trace[i]
        if k in cached:
            return 1 + best(i + 1, cached)
        options = [best(i + 1, cached)]  # bypass
        if len(cached) < capacity:
            options.append(best(i + 1, cached | {k}))
        else:
            options += [best(i + 1, (cached - {v}) | {k}) for v in cached]
        return max(options)

    return best(0, frozenset())


@pytest.mark.parametrize("seed", range(6))
def test_opt_equals_exhaustive_search_on_small_traces(seed: int) -> None:
    rng = np.random.default_rng(seed)
    trace = tuple(int(k) for k in rng.integers(0, 5, size=14))
    assert opt_hits(np.array(trace), 2) == _brute_force_opt(trace, 2)


@pytest.mark.parametrize("seed", range(4))
def test_opt_is_never_beaten(seed: int) -> None:
    rng = np.random.default_rng(seed)
    trace = rng.integers(0, int(rng.integers(20, 200)), size=3000)
    cap = int(rng.integers(2, 50))
    best = opt_hits(trace, cap)
    for name in POLICIES.names():
        assert simulate(make_policy(name, cap), trace) <= best, name


def _lcs_hits(cls_name: str, trace: np.ndarray, capacity: int) -> int:
    lcs = pytest.importorskip("libcachesim")
    cache = getattr(lcs, cls_name)(cache_size=capacity)
    return sum(cache.get(lcs.Request(obj_id=int(k) + 1, obj_size=1)) for k in trace.tolist())


@pytest.mark.parametrize("name", ["lru", "fifo", "lfu", "sieve", "arc"])
@pytest.mark.parametrize("alpha", [0.6, 1.0])
def test_same_hits_as_libcachesim(name: str, alpha: float) -> None:
    trace = _zipf_trace(500, 8000, alpha, seed=3)
    for cap in (10, 100):
        ours = simulate(make_policy(name, cap), trace)
        assert ours == _lcs_hits(LIBCACHESIM_POLICIES[name], trace, cap), (name, cap)


def test_s3fifo_within_tolerance_of_libcachesim() -> None:
    trace = _zipf_trace(1000, 20000, 0.8, seed=4)
    for cap in (100, 200):
        ours = simulate(make_policy("s3fifo", cap), trace)
        ref = _lcs_hits("S3FIFO", trace, cap)
        assert abs(ours - ref) / len(trace) <= 0.005


@pytest.mark.parametrize(("name", "cls"), [("lru", "LRUCache"), ("fifo", "FIFOCache")])
def test_same_hits_as_cachetools(name: str, cls: str) -> None:
    cachetools = pytest.importorskip("cachetools")
    trace = _zipf_trace(300, 5000, 0.8, seed=5)
    ref = getattr(cachetools, cls)(maxsize=40)
    hits = 0
    for k in trace.tolist():
        if k in ref:
            _ = ref[k]  # counts as a use for LRU
            hits += 1
        else:
            ref[k] = True
    assert simulate(make_policy(name, 40), trace) == hits


def test_bad_inputs() -> None:
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ConfigError, match="capacity"):
            make_policy("lru", bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="empty"):
        miss_ratio("lru", [], 4)
    with pytest.raises(ConfigError, match="empty"):
        opt_hits([], 4)
    with pytest.raises(ConfigError, match="unknown cache policy 'lruu'"):
        make_policy("lruu", 4)


def test_miss_ratio_of_all_distinct_keys_is_one() -> None:
    for name in [*POLICIES.names(), "opt"]:
        assert miss_ratio(name, list(range(50)), 5) == 1.0
    assert list(itertools.islice(POLICIES, 1))


@pytest.mark.parametrize("alpha", [0.6, 1.0])
def test_wtinylfu_hits_exactly_libcachesims(alpha: float) -> None:
    # same window, segments, filter (hashes included) and order of updates: the same answer
    # on every request, also at 200 entries where probation has libCacheSim's overflow slot
    lcs = pytest.importorskip("libcachesim")
    trace = _zipf_trace(1000, 8000, alpha, seed=5).tolist()
    for cap in (100, 200, 500):
        ref = lcs.WTinyLFU(cache_size=cap)
        req = make_policy("wtinylfu", cap).request
        for i, k in enumerate(trace):
            assert req(k) == ref.get(lcs.Request(obj_id=k, obj_size=1)), (cap, i)
    assert simulate(make_policy("wtinylfu", 200), trace) > simulate(make_policy("lru", 200), trace)


def test_wtinylfu_without_numba_gives_the_same_answers() -> None:
    # the `fast` extra missing: the same state machine runs as Python over a list
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['numba'] = None\n"
        "import numpy as np\n"
        "from edgeintel.caching.policies import make_policy, simulate\n"
        "from edgeintel.caching.policies import _tinylfu_core as core\n"
        "assert not core.COMPILED\n"
        "t = np.random.default_rng(8).zipf(1.3, 6000) % 900\n"
        "print(simulate(make_policy('wtinylfu', 200), t))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    trace = np.random.default_rng(8).zipf(1.3, 6000) % 900
    assert int(out.stdout) == simulate(make_policy("wtinylfu", 200), trace) > 0


def test_wtinylfu_admission_hand_worked() -> None:
    pol = make_policy("wtinylfu", 200)  # window 2, main 198: probation int(39.6), protected 158
    assert (pol.window_cap, pol.probation_cap, pol.protected_cap) == (2, 39, 158)  # type: ignore[attr-defined]
    for k in range(200):  # new keys all enter the window until the cache is full
        assert pol.admit(k) == []
    # full: window keys 0..197 move to main while it has room (0..38 probation, 39..196
    # protected, 197 in probation's overflow slot), each counted again (estimate 2); then
    # window victim 198 (estimate 1) loses its duel with main's victim 0 (estimate 2)
    assert pol.admit(200) == [198]
    assert pol.admit(201) == [199]  # same for 199
    assert 198 not in pol and 0 in pol
    # 198 comes back: each insertion and each lost duel counts, so its estimate grows
    assert pol.admit(198) == [200]  # 198 estimate 3 now; 200 (1) lost
    assert pol.admit(202) == [201]
    assert pol.admit(203) == [0]  # window victim 198 (3) > main victim 0 (2): 198 admitted
    assert 198 in pol and 0 not in pol and len(pol) == 200
    # probation holds 40 (one over): a probation hit promotes 5, protected's LRU key 39
    # comes back to probation, and probation's LRU key 1 is evicted (the next admit says so)
    assert pol.lookup(5) and 1 not in pol and len(pol) == 199
    assert pol.admit(204) == [1]
