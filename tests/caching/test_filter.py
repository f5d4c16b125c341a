"""Redundancy filter: hand-computed features, the threshold rule, tuning on a real clip."""

from __future__ import annotations

import numpy as np
import pytest

from edgeintel.caching.filter import (
    FEATURES,
    AdaptiveFilter,
    RedundancyFilter,
    filter_stream,
    hidden_alerts,
    margin_sensitivity,
    prepare,
    run_filter,
    simulate_threshold,
    tune_filter,
)
from edgeintel.errors import ConfigError, DataError


def test_pixel_and_area_features_by_hand() -> None:
    a = np.zeros((10, 10), np.uint8)
    b = a.copy()
    b[:5, :5] = 30  # 25 of 100 pixels change by more than 21
    b[9, 9] = 10  # a change below the pixel threshold does not count
    assert FEATURES.get("pixel")(a, b) == pytest.approx(0.25)
    assert FEATURES.get("pixel")(a, a) == 0.0
    assert FEATURES.get("area")(a, b) >= 0.25
    assert FEATURES.get("hist")(a, a) == pytest.approx(0.0, abs=1e-6)
    assert FEATURES.get("hist")(a, np.full_like(a, 200)) == pytest.approx(1.0, abs=1e-6)


def test_sensor_distances_by_hand() -> None:
    a = np.array([[0.0, 1.0, 2.0, 3.0]])
    b = np.array([[2.0, 3.0, 4.0, 5.0]])
    # empirical CDFs differ most at x in [1, 2): 2/4 vs 0
    assert FEATURES.get("ks")(a, b) == pytest.approx(0.5)
    # |d mean| = 2, equal std, pooled std = sqrt(1.25)
    assert FEATURES.get("meanstd")(a, b) == pytest.approx(2 / np.sqrt(1.25), rel=1e-5)
    assert FEATURES.get("ks")(a, a) == 0.0
    c = np.array([[0.0, 1.5, 2.0, -1.0]])  # a record of four sensors: one moved by 4
    assert FEATURES.get("maxabs")(a, c) == pytest.approx(4.0)
    assert FEATURES.get("maxabs")(a, a) == 0.0


def test_hidden_alerts_by_hand() -> None:
    alert = lambda r: r == "A"  # noqa: E731
    # reused outputs vs every input's own: index 1 carries the alert, 2 hides one,
    # 3 has nothing to reuse yet (an alert there counts as hidden too)
    assert hidden_alerts(["N", "A", "N", None], ["N", "A", "A", "A"], alert) == 2
    assert hidden_alerts(["N", "N"], ["N", "N"], alert) == 0


def test_tuning_never_picks_a_threshold_that_hides_an_alert() -> None:
    """Steady readings with one small excursion that the model flags: agreement alone
    (19 of 20) would skip it; the alert rule refuses that threshold."""
    values = [0.0] * 10 + [0.5] + [0.0] * 9
    prepared = [np.array([[v]]) for v in values]
    outputs = ["A" if v else "N" for v in values]
    loose = tune_filter(prepared, outputs, 0.9, ("maxabs",))
    assert loose.threshold == pytest.approx(0.5) and loose.hidden_alerts is None
    safe = tune_filter(prepared, outputs, 0.9, ("maxabs",), urgent=lambda r: r == "A")
    assert safe.threshold == 0.0 and safe.hidden_alerts == 0
    assert "hiding no alert" in safe.reason
    assert safe.to_json()["profile_hidden_alerts"] == 0
    run = run_filter(prepared, outputs.__getitem__, "maxabs", safe.threshold, outputs)
    assert hidden_alerts(run.outputs, outputs, lambda r: r == "A") == 0


def test_margin_sensitivity_by_hand() -> None:
    """Scores 0.1, 0.3, 0.7 against an alarm threshold 1: margins 0.9, 0.7, 0.3; the
    readings move by 1 then 2, so |change of margin| / difference is 0.2 both times;
    factor 2 gives 0.4. Results without a margin (None) are left out of the ratios."""
    prepared = [np.array([[0.0]]), np.array([[1.0]]), np.array([[3.0]])]
    margin = lambda s: None if s is None else 1.0 - s  # noqa: E731
    assert margin_sensitivity(prepared, [0.1, 0.3, 0.7], "maxabs", margin, 0.9, 2.0) == (
        pytest.approx(0.4)
    )
    # one pair 0.2 / 1, the other 0.6 / 2 = 0.3: their median is 0.25
    assert margin_sensitivity(prepared, [0.1, 0.3, 0.9], "maxabs", margin, 0.5, 1.0) == (
        pytest.approx(0.25)
    )
    assert margin_sensitivity(prepared, [0.1, None, 0.7], "maxabs", margin) is None
    same = [np.array([[0.0]])] * 3  # no two inputs differ: nothing to measure
    assert margin_sensitivity(same, [0.1, 0.3, 0.7], "maxabs", margin) is None


def test_a_result_near_its_boundary_is_not_reused_where_a_difference_could_cross_it() -> None:
    """Threshold 10 would skip every reading after the first. The reused score 0.7 has
    margin 0.3 to the alarm threshold 1; at sensitivity 0.4 a reading 0.5 away (0.2 of
    margin) is skipped, one 1.0 away (0.4 >= 0.3) is processed: an alarm, which the guard
    keeps from a reading 2.0 away (0.8 >= its margin's 0.5)."""
    margin = lambda s: 1.0 - s  # noqa: E731
    xs = [np.array([[v]]) for v in (0.0, 0.5, 1.0, 3.0)]
    scores = [0.7, 0.8, 1.5, 0.2]
    kw = {"margin": margin, "sensitivity": 0.4}
    run = run_filter(xs, scores.__getitem__, "maxabs", 10.0, scores, **kw)  # type: ignore[arg-type]
    assert [s.processed for s in run.steps] == [True, False, True, True]
    assert run.outputs == [0.7, 0.7, 1.5, 0.2]  # the alarm at index 2 is carried
    # without the guard the same threshold hides it
    bare = run_filter(xs, scores.__getitem__, "maxabs", 10.0, scores)
    assert bare.outputs[2] == 0.7
    # the live object decides alike
    f = AdaptiveFilter("maxabs", 10.0, adapt=False, **kw)  # type: ignore[arg-type]
    decided = []
    for x, sc in zip(xs, scores, strict=True):
        step = f.decide(x)
        decided.append(step.processed)
        if step.processed:
            f.observe(sc)
    assert decided == [True, False, True, True]


def test_tuning_with_a_margin_rule_reports_and_uses_the_sensitivity() -> None:
    rng = np.random.default_rng(3)
    xs = [np.array([[v]]) for v in rng.normal(0, 1, 200)]
    scores = [float(abs(x[0, 0])) for x in xs]  # alarm above 2
    margin = lambda s: 2.0 - s  # noqa: E731
    urgent = lambda s: s > 2.0  # noqa: E731
    kw = {"features": ("maxabs",), "urgent": urgent, "alert_margin": 1.0}
    report, run = filter_stream(xs, scores, 0.9, 0.5, margin=margin, **kw)  # type: ignore[arg-type]
    want = margin_sensitivity(xs[:100], scores[:100], "maxabs", margin, 0.9, 2.0)
    assert report.sensitivity == pytest.approx(want) and want is not None
    assert report.to_json()["sensitivity"] == pytest.approx(want, abs=1e-6)
    assert hidden_alerts(run.outputs, scores[100:], urgent) == 0
    plain, _ = filter_stream(xs, scores, 0.9, 0.5, **kw)  # type: ignore[arg-type]
    assert plain.sensitivity is None and "sensitivity" not in plain.to_json()


def test_alert_margin_refuses_a_threshold_that_only_just_hides_no_alert() -> None:
    """Ordinary readings alternate between 0 and 1.4; the model flags a reading of 2.5.
    Threshold 1.4 skips every 1.4 (the reference stays 0) and hides no alarm of the
    segment, but would at twice itself: margin 2 refuses it for one that hides none at
    twice itself."""
    values = [0.0, 1.4] * 10 + [2.5] + [1.4, 0.0] * 10
    prepared = [np.array([[v]]) for v in values]
    outputs = [v > 2 for v in values]
    urgent = bool
    kw = {"features": ("maxabs",), "urgent": urgent, "candidates": 64}
    loose = tune_filter(prepared, outputs, 0.9, alert_margin=1.0, **kw)  # type: ignore[arg-type]
    safe = tune_filter(prepared, outputs, 0.9, alert_margin=2.0, **kw)  # type: ignore[arg-type]
    assert loose.threshold == pytest.approx(1.4) and safe.threshold < 1.4
    for th in (safe.threshold, 2 * safe.threshold):
        run = run_filter(prepared, outputs.__getitem__, "maxabs", th)
        assert hidden_alerts(run.outputs, outputs, urgent) == 0
    run = run_filter(prepared, outputs.__getitem__, "maxabs", 2 * loose.threshold)
    assert hidden_alerts(run.outputs, outputs, urgent) == 1


def _stream(n: int, seed: int = 0) -> tuple[list[np.ndarray], list[int]]:
    """Grey frames with a bright square moving in steps; the 'count' is its column band."""
    rng = np.random.default_rng(seed)
    frames, outputs = [], []
    x = 0
    for _ in range(n):
        x = min(100, max(0, x + int(rng.integers(-2, 6))))
        f = np.full((48, 128), 40, np.uint8)
        f[10:30, x : x + 20] = 220
        f = np.clip(f + rng.normal(0, 2, f.shape), 0, 255).astype(np.uint8)
        frames.append(prepare(f))
        outputs.append(x // 25)
    return frames, outputs


def test_filter_never_skips_above_threshold() -> None:
    frames, outputs = _stream(120)
    run = run_filter(frames, lambda i: outputs[i], "pixel", 0.02, reference=outputs)
    assert 0 < run.skipped < run.inputs
    for s in run.steps:
        if s.processed:
            assert s.difference > s.threshold or s.probe
        else:
            assert s.difference <= s.threshold
    with pytest.raises(ConfigError, match="threshold"):
        RedundancyFilter("pixel", -1.0)


def test_threshold_zero_skips_only_exact_repeats() -> None:
    f = np.full((8, 8), 7, np.uint8)
    g = f.copy()
    g[0, 0] = 200
    skip, agree = simulate_threshold([f, f, g, g], [0, 0, 1, 1], "pixel", 0.0)
    assert skip == 0.5 and agree == 1.0


def test_tuning_meets_target_on_held_out_segment() -> None:
    frames, outputs = _stream(400, seed=1)
    rep = tune_filter(frames[:150], outputs[:150], target=0.95)
    assert rep.agreement >= 0.95 and rep.skip_fraction > 0.3
    assert rep.feature in rep.candidates and "agreement" in rep.reason
    run = run_filter(
        frames[150:], lambda i: outputs[150 + i], rep.feature, rep.threshold, outputs[150:]
    )
    assert run.agreement is not None and run.agreement >= 0.95
    assert run.skip_fraction > 0.3
    # the adapted filter, tuned by replaying the adaptation, also carries
    rep, run = filter_stream(frames, outputs, 0.95, profile_fraction=150 / 400)
    assert "replayed with online adaptation" in rep.reason
    assert run.agreement is not None and run.agreement >= 0.95 and run.skip_fraction > 0.3


def test_adaptation_lowers_threshold_when_probes_disagree() -> None:
    frames, outputs = _stream(300, seed=2)
    # a threshold far too high skips everything; probes must pull it down
    fixed = run_filter(frames, lambda i: outputs[i], "pixel", 1.0, outputs)
    adapted = run_filter(frames, lambda i: outputs[i], "pixel", 1.0, outputs, adapt=True)
    assert min(s.threshold for s in adapted.steps) < 1.0 and adapted.probes > 0
    assert adapted.agreement is not None and fixed.agreement is not None
    assert adapted.agreement > fixed.agreement


def test_a_changed_result_makes_the_filter_look_at_every_input_until_it_settles() -> None:
    """Hand-worked trace: alternating frames a, b differ by 1/16 of their pixels.

    With threshold 0.5 every frame is skipped until a probe (probe_every=2);
    a probe whose result differs from the reused one drops the threshold to 0
    (lower=0), so the next frames are processed until raise_after=2 agree.
    """
    a = np.zeros((4, 4), np.uint8)
    b = a.copy()
    b[0, 0] = 255  # pixel difference 1/16 between a and b
    frames = [a, b, a, b, a, b, a, b, a, b]
    outputs = [0, 0, 0, 1, 1, 1, 0, 0, 0, 0]
    run = run_filter(
        frames, outputs.__getitem__, "pixel", 0.5, outputs, True, probe_every=2, raise_after=2
    )
    processed = [s.index for s in run.steps if s.processed]
    # 0 processed; 1, 2 skipped; 3 probe (1 != 0: threshold -> 0); 4 (1, agrees 1),
    # 5 (1, agrees 2: threshold back to 0.5); 6, 7 skipped; 8 probe (0 != 1: -> 0); 9
    assert processed == [0, 3, 4, 5, 8, 9]
    assert [s.threshold for s in run.steps] == [0.5, 0.5, 0.5, 0.0, 0.0, 0.5, 0.5, 0.5, 0.0, 0.0]
    assert run.outputs == [0, 0, 0, 1, 1, 1, 1, 1, 0, 0]
    assert run.agreement == pytest.approx(0.8)
    with pytest.raises(ConfigError, match="raise_after"):
        run_filter(frames, outputs.__getitem__, "pixel", 0.5, adapt=True, raise_after=0)


def test_adaptive_filter_on_a_live_stream_decides_like_run_filter() -> None:
    """A device drives the policy object input by input on raw frames."""
    rng = np.random.default_rng(4)
    raw, outputs = [], []
    x = 0
    for _ in range(150):
        x = min(100, max(0, x + int(rng.integers(-2, 6))))
        f = np.full((48, 128), 40, np.uint8)
        f[10:30, x : x + 20] = 220
        raw.append(f)
        outputs.append(x // 25)
    live = AdaptiveFilter("pixel", 0.03, probe_every=5)
    decisions, reused = [], []
    for frame, out in zip(raw, outputs, strict=True):
        processed = live.should_process(frame)  # prepare() is applied inside
        if processed:
            live.observe(out)
        decisions.append(processed)
        reused.append(live.current)
    run = run_filter(
        [prepare(f) for f in raw], outputs.__getitem__, "pixel", 0.03, adapt=True, probe_every=5
    )
    assert decisions == [s.processed for s in run.steps] and reused == run.outputs
    assert 0 < sum(decisions) < len(decisions) and run.probes > 0
    with pytest.raises(RuntimeError, match="observe"):
        live.observe(1)  # nothing was processed since the last observe


def test_tuning_replays_the_adapted_filter() -> None:
    """The profiling skip and agreement are those of the filter that will run."""
    frames, outputs = _stream(200, seed=3)
    for adapt in (False, True):
        rep = tune_filter(frames, outputs, 0.9, ["pixel"], adapt=adapt)
        run = run_filter(frames, outputs.__getitem__, "pixel", rep.threshold, outputs, adapt)
        assert rep.skip_fraction == pytest.approx(run.skip_fraction)
        assert rep.agreement == pytest.approx(run.agreement)


@pytest.mark.slow
def test_tuning_on_a_real_clip_with_the_face_counter() -> None:
    from edgeintel.caching.detectors import COUNTERS, read_frames
    from edgeintel.data.datasets import video_path

    raw = list(read_frames(video_path("carphone_pristine.mp4")))
    counter = COUNTERS.get("faces")()
    ref = [counter(f) for f in raw]
    assert len(set(ref)) > 1  # the reference's output changes within the clip
    frames = [prepare(f) for f in raw]
    k = len(frames) * 3 // 10
    rep = tune_filter(frames[:k], ref[:k], target=0.95)
    run = run_filter(frames[k:], lambda i: ref[k + i], rep.feature, rep.threshold, ref[k:])
    assert run.agreement is not None and run.agreement >= 0.95
    assert run.skip_fraction >= 0.5


def test_bad_inputs() -> None:
    frames, outputs = _stream(10)
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ConfigError, match=r"agreement target must be in \(0, 1\]"):
            tune_filter(frames, outputs, bad)
    with pytest.raises(DataError, match="outputs"):
        tune_filter(frames, outputs[:-1], 0.9)
    f = RedundancyFilter("pixel", 0.1)
    f.should_process(frames[0])
    with pytest.raises(DataError, match="shape"):
        f.should_process(np.zeros((3, 3), np.uint8))
    with pytest.raises(ConfigError, match="unknown difference feature"):
        RedundancyFilter("colour", 0.1)
