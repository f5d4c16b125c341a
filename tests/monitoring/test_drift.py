"""Drift detectors: hand-computed statistics, calibration to the stated false-alarm rate,
firing on a shift, bounded memory and config errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgeintel.errors import ConfigError, DataError
from edgeintel.monitoring import (
    CORRECTIONS,
    DRIFT_DETECTORS,
    DriftConfig,
    DriftMonitor,
    alpha_per_test,
    ks_batch,
    ks_statistic,
    mmd2_rbf,
)


def test_ks_statistic_by_hand() -> None:
    # ECDFs of {1,2,3} and {2.5,4}: at 2, F_a = 2/3 and F_b = 0 (at 3: 1 vs 1/2): gap 2/3
    assert ks_statistic(np.array([1.0, 2.0, 3.0]), np.array([2.5, 4.0])) == pytest.approx(2 / 3)
    assert ks_statistic(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.0
    assert ks_statistic(np.array([0.0]), np.array([1.0])) == 1.0


def test_batched_ks_equals_the_plain_one_with_ties() -> None:
    rng = np.random.default_rng(3)
    ref = np.sort(rng.integers(0, 6, size=40).astype(float))
    wins = rng.integers(0, 8, size=(50, 15)).astype(float)
    want = [ks_statistic(w, ref) for w in wins]
    assert ks_batch(wins, ref) == pytest.approx(want)


def test_batched_scores_equal_single_ones() -> None:
    m = _monitor(2, detectors=("ks", "mmd"))
    rng = np.random.default_rng(4)
    wins = rng.normal(size=(5, 100, m.proj.shape[1]))
    for det in m.detectors.values():
        assert det.scores(wins) == pytest.approx([det.score(w) for w in wins])


def test_mmd_by_hand() -> None:
    # x = {0}, y = {1}, gamma = 1: k(x,x) = k(y,y) = 1, k(x,y) = e^-1 -> MMD^2 = 2 - 2/e
    assert mmd2_rbf(np.array([[0.0]]), np.array([[1.0]]), 1.0) == pytest.approx(2 - 2 / math.e)
    # x = {0, 1}, y = {0}: mean k_xx = (2 + 2e^-1)/4, k_yy = 1, mean k_xy = (1 + e^-1)/2
    e = math.exp(-1)
    want = (2 + 2 * e) / 4 + 1 - 2 * (1 + e) / 2
    assert mmd2_rbf(np.array([[0.0], [1.0]]), np.array([[0.0]]), 1.0) == pytest.approx(want)
    assert mmd2_rbf(np.ones((3, 2)), np.ones((4, 2)), 0.5) == pytest.approx(0.0)


def test_corrections_by_hand() -> None:
    p = np.array([0.04, 0.01, 0.5, 0.03])
    assert CORRECTIONS.get("bonferroni")(p) == pytest.approx(0.04)  # 4 x 0.01
    # BH: sorted 0.01, 0.03, 0.04, 0.5 -> x 4/i: 0.04, 0.06, 0.0533, 0.5 -> 0.04
    assert CORRECTIONS.get("fdr")(p) == pytest.approx(0.04)
    assert CORRECTIONS.get("fdr")(np.array([0.02, 0.02])) == pytest.approx(0.02)
    assert CORRECTIONS.get("bonferroni")(np.array([0.02, 0.02])) == pytest.approx(0.04)


def test_alpha_per_test_is_the_hourly_budget_over_the_tests() -> None:
    cfg = DriftConfig(input_hz=2.0, stride=50, false_alarms_per_hour=1.0, detectors=("ks",))
    assert alpha_per_test(cfg) == pytest.approx(1 / 144)  # 2 x 3600 / 50 = 144 tests/hour
    cfg2 = DriftConfig(input_hz=2.0, stride=50, false_alarms_per_hour=1.0)
    assert alpha_per_test(cfg2) == pytest.approx(1 / 144 / 3)


def _probs(rng: np.random.Generator, n: int, sharp: float = 3.0) -> np.ndarray:
    return rng.dirichlet(np.full(5, 1.0 / sharp), size=n)


def _monitor(seed: int, **kw: object) -> DriftMonitor:
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=(1200, 6))
    kw = {"calibration_windows": 3000, **kw}
    cfg = DriftConfig(seed=seed, **kw)  # type: ignore[arg-type]
    return DriftMonitor(cfg, ref, _probs(rng, 1200))


def test_fires_on_a_shifted_segment() -> None:
    for name in ("ks", "mmd", "confidence"):
        rng = np.random.default_rng(7)
        m = _monitor(1, detectors=(name,))
        for _ in range(400):
            s = m.update(rng.normal(size=6), _probs(rng, 1)[0])
        assert s.alarms == 0
        onset = m._n
        for _ in range(300):
            x = rng.normal(size=6) + (1.0 if name != "confidence" else 0.0)
            out = _probs(rng, 1, sharp=0.3 if name == "confidence" else 3.0)[0]
            s = m.update(x, out)
            if s.drift:
                break
        assert s.drift and name in s.fired, name
        assert s.first_alarm is not None and s.first_alarm - onset <= 200, name


def test_stays_quiet_at_the_stated_rate_over_many_seeds() -> None:
    """1 alarm per device-hour at 1 input/s, all three detectors: over 8 seeds x 1 hour the
    count of alarmed tests stays near the budget (bound 20 in 8 hours: a Poisson(8) tail of
    ~1e-4), far below an uncalibrated threshold's (checked: 0 instead of the quantile fires
    on every test)."""
    alarms = 0
    for seed in range(8):
        rng = np.random.default_rng(100 + seed)
        m = _monitor(seed, stride=50, mmd_reference=100, calibration_windows=1500)
        for _ in range(3600):
            s = m.update(rng.normal(size=6), _probs(rng, 1)[0])
        alarms += s.alarms
    assert alarms <= 20


def test_memory_is_bounded_by_the_window() -> None:
    m = _monitor(0, detectors=("ks",), window=50, stride=10)
    rng = np.random.default_rng(0)
    for _ in range(500):
        m.update(rng.normal(size=6))
    assert m._xring.shape == (50, 6) and m._oring.shape == (50,)


def test_tests_every_stride_once_the_window_is_full() -> None:
    m = _monitor(0, detectors=("ks",), window=20, stride=5)
    rng = np.random.default_rng(0)
    tested = [m.update(rng.normal(size=6)).tested for _ in range(40)]
    assert [i + 1 for i, t in enumerate(tested) if t] == [20, 25, 30, 35, 40]


def test_bad_configs_name_the_field() -> None:
    with pytest.raises(ConfigError, match="unknown drift detector 'nope'"):
        DriftConfig(detectors=("nope",))
    with pytest.raises(ConfigError, match=r"drift\.input_hz"):
        DriftConfig(input_hz=0)
    with pytest.raises(ConfigError, match=r"drift\.calibration_windows must be >= "):
        DriftConfig(calibration_windows=100, false_alarms_per_hour=0.1)
    with pytest.raises(ConfigError, match="multiple-testing correction"):
        DriftConfig(correction="holm")
    with pytest.raises(DataError, match="reference_outputs"):
        DriftMonitor(DriftConfig(), np.zeros((400, 3)))
    with pytest.raises(DataError, match="at least 2 x window"):
        DriftMonitor(DriftConfig(detectors=("ks",)), np.zeros((50, 3)))
    assert set(DRIFT_DETECTORS.names()) >= {"ks", "mmd", "confidence"}
