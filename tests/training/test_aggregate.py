"""Aggregation rules against hand-computed arrays, outlier tolerance and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

from edgeintel.errors import ConfigError, DataError
from edgeintel.training.aggregate import (
    AGGREGATORS,
    AggregationConfig,
    aggregate,
    clip_by_norm,
    coordinate_median,
    filter_finite,
    krum,
    krum_scores,
    multi_krum,
    trimmed_mean,
    weighted_mean,
)


def _u(*vals: float) -> list[np.ndarray]:
    return [np.array(vals, dtype=np.float32)]


def test_fedavg_weighted_mean_by_hand() -> None:
    ups = [
        [np.array([1, 2], np.float32), np.array([[0.0]], np.float32)],
        [np.array([3, 6], np.float32), np.array([[4.0]], np.float32)],
        [np.array([5, 10], np.float32), np.array([[8.0]], np.float32)],
    ]
    out = aggregate(ups, [1, 1, 2], AggregationConfig(rule="fedavg"))
    np.testing.assert_allclose(out[0], [3.5, 7.0])  # (1+3+10)/4, (2+6+20)/4
    np.testing.assert_allclose(out[1], [[5.0]])  # (0+4+16)/4
    assert out[1].shape == (1, 1) and out[0].dtype == np.float32


def test_median_and_trimmed_mean_by_hand() -> None:
    ups = [_u(1, 2), _u(3, 6), _u(5, 10), _u(100, -50)]
    np.testing.assert_allclose(coordinate_median(ups)[0], [4.0, 4.0])  # (3+5)/2, (2+6)/2
    # f=1 drops min and max per coordinate: x: {3,5} -> 4; y: {2,6} -> 4
    np.testing.assert_allclose(trimmed_mean(ups, 1)[0], [4.0, 4.0])
    np.testing.assert_allclose(trimmed_mean(ups[:3], 0)[0], [3.0, 6.0])


def test_krum_and_multi_krum_by_hand() -> None:
    ups = [_u(0), _u(1), _u(2), _u(3), _u(100)]
    # n - f - 2 = 2 nearest: scores 0:1+4, 1:1+1, 2:1+1, 3:1+4, 100: 97^2+98^2
    np.testing.assert_allclose(
        krum_scores(np.array([[0.0], [1], [2], [3], [100]]), 1), [5, 2, 2, 5, 97**2 + 98**2]
    )
    np.testing.assert_allclose(krum(ups, 1)[0], [1.0])  # tie 1 vs 2: lowest index
    np.testing.assert_allclose(multi_krum(ups, None, 1, 3)[0], [1.0])  # mean of 1, 2, 0
    np.testing.assert_allclose(multi_krum(ups, [1, 1, 2, 1, 1], 1, 2)[0], [5 / 3])  # (1+2*2)/3


def test_norm_clip_by_hand() -> None:
    ups = [_u(3, 4), _u(0, 1)]
    np.testing.assert_allclose(clip_by_norm(ups[0], 2.5)[0], [1.5, 2.0])
    out = aggregate(ups, [1, 1], AggregationConfig(rule="norm_clip", clip_norm=2.5))
    np.testing.assert_allclose(out[0], [0.75, 1.5])


@pytest.mark.parametrize("rule", ["krum", "multi_krum", "median", "trimmed_mean"])
def test_robust_rules_tolerate_their_outliers(rule: str) -> None:
    rng = np.random.default_rng(0)
    n, f = 9, 2  # krum needs 2f + 2 = 6 < 9; trimmed mean needs 2f < n; median f < n/2
    honest = [[1.0 + 0.01 * rng.standard_normal(20).astype(np.float32)] for _ in range(n - f)]
    bad = [[np.full(20, 1e6, dtype=np.float32)], [np.full(20, -3e5, dtype=np.float32)]]
    ups = honest[:3] + bad[:1] + honest[3:] + bad[1:]
    out = aggregate(ups, np.ones(n), AggregationConfig(rule=rule, f=f))[0]
    assert np.all(np.abs(out - 1.0) < 0.05), out
    plain = aggregate(ups, np.ones(n))[0]
    assert np.all(np.abs(plain - 1.0) > 1e4)  # the outliers do break the plain mean


def test_every_registered_rule_returns_the_update_shapes() -> None:
    ups = [[np.full((2, 3), float(i), np.float32), np.full(4, -float(i), np.float32)] for i in range(7)]
    for rule in AGGREGATORS:
        cfg = AggregationConfig(rule=rule, f=1, clip_norm=1.0 if rule == "norm_clip" else None)
        out = aggregate(ups, np.arange(1, 8), cfg)
        assert [a.shape for a in out] == [(2, 3), (4,)], rule
        assert all(a.dtype == np.float32 and np.isfinite(a).all() for a in out)


def test_bad_inputs() -> None:
    with pytest.raises(DataError, match="shape"):
        aggregate([_u(1, 2), _u(1, 2, 3)], None)
    with pytest.raises(DataError, match="2 arrays"):
        aggregate([_u(1), [np.zeros(1), np.zeros(1)]], None)
    with pytest.raises(DataError, match="total weight"):
        aggregate([_u(1), _u(2)], [0, 0])
    with pytest.raises(DataError, match="NaN"):
        aggregate([_u(1), _u(np.nan)], None)
    with pytest.raises(DataError, match="zero updates"):
        aggregate([], None)
    with pytest.raises(ConfigError, match=r"2f\+2=6"):
        aggregate([_u(i) for i in range(6)], None, AggregationConfig(rule="krum", f=2))
    with pytest.raises(ConfigError, match="more than 2f"):
        trimmed_mean([_u(1), _u(2), _u(3), _u(4)], 2)
    with pytest.raises(ConfigError, match="unknown aggregation rule"):
        AggregationConfig(rule="nope")
    with pytest.raises(ConfigError, match="clip_norm"):
        AggregationConfig(rule="norm_clip")
    with pytest.raises(DataError, match="weights"):
        weighted_mean([_u(1), _u(2)], [1, -1])


def test_filter_finite_drops_and_reports() -> None:
    ups = [_u(1), _u(np.inf), _u(3), _u(np.nan)]
    kept, w, rejected = filter_finite(ups, [1, 2, 3, 4])
    assert rejected == [1, 3]
    np.testing.assert_array_equal(w, [1, 3])
    np.testing.assert_allclose(aggregate(kept, w)[0], [2.5])
