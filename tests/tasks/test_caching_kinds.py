"""The redundancy filter and the shared result cache judge agreement by the task kind's rule:
equal labels; regression values within the tolerance; anomaly scores on the same side of the
threshold. Hand-worked traces, so a filter or cache that fell back to ``==`` fails."""

from __future__ import annotations

import numpy as np
import pytest

from edgeintel.caching.filter import run_filter, simulate_threshold
from edgeintel.caching.result_cache import ResultCache, ResultCacheConfig, agreement_votes
from edgeintel.caching.reuse import SharedStream, replay_reuse
from edgeintel.tasks import make_task


def test_same_is_agree_on_one_sample() -> None:
    reg = make_task("regression", tolerance=0.5)
    assert reg.same(1.0, 1.5) and not reg.same(1.0, 1.51)
    anomaly = make_task("anomaly", threshold=2.0)
    assert anomaly.same(0.1, 1.9) and anomaly.same(2.5, 9.0) and not anomaly.same(1.9, 2.1)
    assert make_task("classification").same(3, 3) and not make_task("classification").same(3, 4)


def _frames() -> list[np.ndarray]:
    """Identical frames (difference 0): with threshold 0 every frame after the first is a skip."""
    return [np.zeros((4, 4), np.uint8)] * 4


def test_filter_agreement_uses_the_regression_tolerance() -> None:
    values = [10.0, 10.3, 10.6, 11.0]  # the model's value for every input
    # every frame after the first reuses 10.0: off by 0.3, 0.6, 1.0
    skip, eq = simulate_threshold(_frames(), values, "pixel", 0.0)
    assert (skip, eq) == (0.75, 0.25)  # by equality only the processed one agrees
    reg = make_task("regression", tolerance=0.65)
    skip, agree = simulate_threshold(_frames(), values, "pixel", 0.0, same=reg.same)
    assert (skip, agree) == (0.75, 0.75)  # 10.0, 10.3, 10.6 are within 0.65 of 10.0
    run = run_filter(_frames(), values.__getitem__, "pixel", 0.0, values, same=reg.same)
    assert run.agreement == pytest.approx(0.75)


def test_filter_agreement_for_anomaly_is_the_same_alarm_decision() -> None:
    scores = [0.2, 0.9, 1.4, 0.1]  # reconstruction errors; threshold 1.0
    anomaly = make_task("anomaly", threshold=1.0)
    _, agree = simulate_threshold(_frames(), scores, "pixel", 0.0, same=anomaly.same)
    assert agree == 0.75  # 0.2 reused: 0.9 and 0.1 are also normal, 1.4 is a missed alarm


def test_adaptive_filter_reacts_to_a_change_beyond_the_tolerance_only() -> None:
    a = np.zeros((4, 4), np.uint8)
    b = a.copy()
    b[0, 0] = 255  # difference 1/16 between a and b
    frames = [a, b, a, b, a, b]
    values = [5.0, 5.0, 5.0, 5.1, 5.1, 5.1]
    # threshold 0.5 skips all but probes (probe_every=2): frame 3 is a probe whose 5.1
    # differs from 5.0 by equality (threshold -> 0: frames 4, 5 processed) but not within
    # tolerance 0.2 (threshold stays: 4, 5 skipped)
    kw = {"adapt": True, "probe_every": 2, "raise_after": 2}
    eq = run_filter(frames, values.__getitem__, "pixel", 0.5, values, **kw)  # type: ignore[arg-type]
    assert [s.index for s in eq.steps if s.processed] == [0, 3, 4, 5]
    reg = make_task("regression", tolerance=0.2)
    tol = run_filter(frames, values.__getitem__, "pixel", 0.5, values, same=reg.same, **kw)  # type: ignore[arg-type]
    assert [s.index for s in tol.steps if s.processed] == [0, 3]
    assert tol.agreement == 1.0


def test_votes_count_agreeing_neighbours() -> None:
    assert agreement_votes([1, 1, 2], lambda a, b: a == b) == {1: 2, 2: 1}
    close = make_task("regression", tolerance=0.25).same
    # 1.0 agrees with 1.0, 1.2; 1.2 with all three; 1.4 with 1.2, 1.4
    assert agreement_votes([1.0, 1.2, 1.4], close) == {1.0: 2, 1.2: 3, 1.4: 2}


def _cache(same: object = None) -> ResultCache:
    cfg = ResultCacheConfig(dim=2, k=3, min_votes=3, homogeneity=1.0, max_distance=1.0)
    return ResultCache(cfg, same)  # type: ignore[arg-type]


def test_regression_values_are_reused_within_the_tolerance() -> None:
    v = np.array([1.0, 0.0], np.float32)
    plain, tolerant = _cache(), _cache(make_task("regression", tolerance=0.25).same)
    for c in (plain, tolerant):
        for i, value in enumerate((20.0, 20.2, 20.4)):
            c.insert(value, float(i), vector=v + 0.01 * i)
    assert not plain.lookup(3.0, vector=v).hit  # three different floats never agree by ==
    hit = tolerant.lookup(3.0, vector=v)
    assert hit.hit and hit.result == 20.2 and hit.votes == {20.0: 2, 20.2: 3, 20.4: 2}


def test_replay_judges_reused_anomaly_scores_by_the_threshold() -> None:
    x = np.zeros((3, 1, 8), np.float32)  # one scene seen three times: exact hits after the first
    stream = SharedStream(np.zeros(3, int), np.zeros(3, int), x)
    cfg = ResultCacheConfig(dim=8, min_votes=1)
    truth = [0.5, 0.7, 1.5]  # the model's score on each request; threshold 1.0
    eq = replay_reuse(stream, lambda _: None, cfg, 1.0, truth=truth)
    assert (eq.reused, eq.reused_correct) == (2, 0)
    same = make_task("anomaly", threshold=1.0).same
    rep = replay_reuse(stream, lambda _: None, cfg, 1.0, truth=truth, same=same)
    assert (rep.reused, rep.reused_correct) == (2, 1)  # 0.5 for 0.7: both normal; 1.5 missed


def test_replay_keeps_each_lookups_fastest_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """A load spike in one window only slows that window: each request's lookup keeps its
    fastest time over the windows (as every other latency), the counts are the same."""
    from edgeintel.caching import reuse

    x = np.zeros((3, 1, 8), np.float32)
    stream = SharedStream(np.zeros(3, int), np.zeros(3, int), x)
    cfg = ResultCacheConfig(dim=8, min_votes=1)
    # lookup durations (s): window 1 spikes on request 0, window 2 on request 2
    spans = iter([0.010, 0.001, 0.002, 0.001, 0.001, 0.009])
    clock = [0.0]

    def fake_counter() -> float:  # start, end, start, end, ...: each end adds the next span
        clock[0] += next(spans) if fake_counter.ends % 2 else 0.0  # type: ignore[attr-defined]
        fake_counter.ends += 1  # type: ignore[attr-defined]
        return clock[0]

    fake_counter.ends = 0  # type: ignore[attr-defined]
    monkeypatch.setattr(reuse.time, "perf_counter", fake_counter)
    rep = replay_reuse(stream, lambda _: None, cfg, 1.0, truth=[0, 0, 0], windows=2)
    # fastest per request: 0.001, 0.001, 0.002 -> mean 4/3 ms
    assert rep.lookup_ms == pytest.approx(4 / 3)
    assert (rep.requests, rep.reused) == (3, 2)
    with pytest.raises(ValueError, match="windows must be >= 1"):
        replay_reuse(stream, lambda _: None, cfg, 1.0, truth=[0, 0, 0], windows=0)
