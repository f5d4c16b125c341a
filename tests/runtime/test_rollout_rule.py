"""The rollout rule by hand: guard statistics, the look schedule, promotion, rollback
(guard, refusal, timeout) and the deterministic device buckets."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from edgeintel.errors import ConfigError
from edgeintel.runtime.guards import (
    GUARDS,
    GuardLimits,
    VersionSample,
    agresti_caffo_lower,
    binom_tail,
)
from edgeintel.runtime.rollout import Rollout, RolloutManager, RolloutSettings, RolloutState, bucket


def test_agresti_caffo_by_hand() -> None:
    # p1 = 11/52, p2 = 1/52; se = sqrt(p1 q1 / 52 + p2 q2 / 52); z_0.95 = 1.644854
    p1, p2 = 11 / 52, 1 / 52
    se = math.sqrt(p1 * (1 - p1) / 52 + p2 * (1 - p2) / 52)
    assert agresti_caffo_lower(10, 50, 0, 50, 0.05) == pytest.approx(p1 - p2 - 1.644854 * se)


def test_binomial_tail_by_hand() -> None:
    assert binom_tail(0, 10, 0.05) == 1.0
    assert binom_tail(11, 10, 0.05) == 0.0
    assert binom_tail(10, 10, 0.5) == pytest.approx(0.5**10)
    assert binom_tail(1, 3, 0.05) == pytest.approx(1 - 0.95**3)


def _sample(n: int, errors: int = 0, correct: int | None = None, ms: float = 1.0) -> VersionSample:
    s = VersionSample()
    for i in range(n):
        ok = correct is None or i < correct
        s.add({"error": i < errors, "label": 1, "truth": 1 if ok else 0, "latency_ms": ms})
    return s


def test_guards_trip_on_evidence_only() -> None:
    lim = GuardLimits(max_error_rate_increase=0.01, max_metric_drop=0.02, max_latency_p95_ratio=1.5)
    err, metric, lat = (GUARDS.get(n) for n in ("error_rate", "metric", "latency_p95"))
    good = _sample(200, correct=180)
    assert not err(_sample(200, errors=2, correct=180), good, lim, 0.05).tripped  # 1 % vs 0
    assert err(_sample(200, errors=40), good, lim, 0.05).tripped  # 20 % errors
    assert metric(_sample(200, correct=100), good, lim, 0.05).tripped  # 0.5 vs 0.9
    assert not metric(_sample(200, correct=178), good, lim, 0.05).tripped  # 0.89 vs 0.9
    assert lat(_sample(200, ms=3.0), good, lim, 0.05).tripped  # 3 x slower
    assert not lat(_sample(200, ms=1.2), good, lim, 0.05).tripped
    r = metric(_sample(200, correct=100), good, lim, 0.05)
    assert r.canary == 0.5 and r.stable == 0.9 and "share correct 0.500 vs stable 0.900" in r.reason


def _feed(r: Rollout, version: str, n: int, correct: int, start: int = 0) -> None:
    for i in range(start, start + n):
        payload = {
            "model": "m",
            "version": version,
            "label": 1,
            "truth": 1 if i - start < correct else 0,
        }
        r.observe(f"d{i % 7}", f"{version}:{r.stage}:{i}", payload)
    r.step()


def test_good_version_is_promoted_through_stages() -> None:
    t = [0.0]
    cfg = RolloutSettings(model="m", version="2", stages=[0.2, 1.0], min_results=50, looks=2)
    r = Rollout(cfg, "1", clock=lambda: t[0])
    _feed(r, "1", 60, 54)
    _feed(r, "2", 60, 54)
    assert r.state is RolloutState.RUNNING and r.look == 1  # one look taken, quiet
    _feed(r, "1", 40, 36, 60)
    _feed(r, "2", 40, 36, 60)
    assert r.state is RolloutState.PROMOTED and r.share == 1.0
    assert [e["event"] for e in r.timeline] == ["stage", "look", "look", "promote"]
    assert r.assign("anyone") == "2"


def test_bad_version_rolls_back_with_the_reason() -> None:
    cfg = RolloutSettings(model="m", version="2", stages=[0.1, 1.0], min_results=50)
    r = Rollout(cfg, "1", clock=lambda: 0.0)
    _feed(r, "1", 50, 45)
    _feed(r, "2", 50, 10)
    assert r.state is RolloutState.ROLLED_BACK
    assert r.reason.startswith("share correct 0.200 vs stable 0.900")
    assert r.assign("d1") == "1" and r.timeline[-1]["event"] == "rollback"


def test_duplicates_refusal_and_timeout() -> None:
    t = [0.0]
    cfg = RolloutSettings(model="m", version="2", stage_timeout_s=10)
    r = Rollout(cfg, "1", clock=lambda: t[0])
    for _ in range(3):  # a replayed result counts once
        r.observe("d", "k", {"version": "2", "label": 1, "truth": 1})
    assert r.samples["2"].n == 1
    t[0] = 11.0
    r.step()
    assert r.state is RolloutState.ROLLED_BACK and r.reason.startswith("inconclusive")
    r2 = Rollout(cfg, "1")
    r2.refuse("d3", "2", "unsigned")
    assert r2.state is RolloutState.ROLLED_BACK and "d3 refused version 2" in r2.reason


def test_buckets_are_deterministic_and_stages_nest() -> None:
    cfg = RolloutSettings(model="m", version="2", stages=[0.1, 0.5, 1.0])
    devices = [f"dev-{i}" for i in range(2000)]
    share = sum(bucket("m:1->2", d) < 0.1 for d in devices) / len(devices)
    assert 0.08 < share < 0.12
    r = Rollout(cfg, "1")
    canary = {d for d in devices if r.assign(d) == "2"}
    r.stage = 1
    assert canary <= {d for d in devices if r.assign(d) == "2"}


def test_settings_refuse_bad_values_with_the_field() -> None:
    with pytest.raises(ValidationError, match="increasing shares ending at 1"):
        RolloutSettings(model="m", version="2", stages=[0.5, 0.2])
    with pytest.raises(ValidationError, match="version number"):
        RolloutSettings(model="m", version="v2")
    with pytest.raises(ValidationError, match="unknown rollout guard"):
        RolloutSettings(model="m", version="2", guards=["nope"])


def test_manager_pins_and_tracks_devices() -> None:
    pins: dict[str, str] = {}
    mgr = RolloutManager(lambda m: ["1", "2"], pins.__setitem__)
    with pytest.raises(ConfigError, match="version 3 of 'm' is not served"):
        mgr.start(RolloutSettings(model="m", version="3"), "1")
    r = mgr.start(RolloutSettings(model="m", version="2", min_results=1, looks=1), "1")
    assert pins == {"m": "1"} and r.state is RolloutState.RUNNING
    with pytest.raises(ConfigError, match="still running"):
        mgr.start(RolloutSettings(model="m", version="2"), "1")
    status = {"model": "m", "version": "1"}
    mgr.ingest("d0", [{"key": "k", "payload": {"model": "m", "version": "1"}}], status)
    assert mgr.pending("m") == ([] if r.assign("d0") == "1" else ["d0"])
    mgr.ingest("d0", [], {"model": "m", "version": "1", "refused": {"2": "unsigned"}})
    assert r.state is RolloutState.ROLLED_BACK and pins == {"m": "1"}
    assert mgr.to_json()["devices"]["d0"]["refused"] == {"2": "unsigned"}
    r2 = mgr.start(RolloutSettings(model="m", version="2", stages=[1.0]), "1")
    assert r2.state is RolloutState.PROMOTED and pins == {"m": "2"}  # no canary: at once
    assert mgr.pending("m") == ["d0"] and len(mgr.history) == 1


def test_a_small_known_fleet_gets_a_canary_and_a_stable_side() -> None:
    mgr = RolloutManager(lambda m: ["1", "2"], lambda m, v: None)
    for d in ("phone-0", "phone-1", "phone-2"):
        mgr.ingest(d, [])
    r = mgr.start(RolloutSettings(model="m", version="2", stages=[0.2, 1.0]), "1")
    sides = [r.assign(d) for d in ("phone-0", "phone-1", "phone-2")]
    assert "1" in sides and "2" in sides  # the id is salted until both sides hold a device
    assert r.id.startswith("m:1->2")
