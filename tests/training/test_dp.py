"""DP-FedAvg: clipping, noise scale, adaptive clipping, accounting against dp-accounting."""

from __future__ import annotations

import math

import dp_accounting
import numpy as np
import pytest

from edgeintel.errors import ConfigError, DataError
from edgeintel.training.dp import (
    ClipMode,
    DifferentialPrivacy,
    DPConfig,
    PrivacyAccountant,
    adaptive_clip_update,
    clip_update,
    dp_mean,
    epsilon_for,
    l2_norm,
    noise_multiplier_for_epsilon,
    update_noise_multiplier,
)


def test_clip_update_hand_computed() -> None:
    upd = [np.array([3.0, 0.0], dtype=np.float32), np.array([[4.0]], dtype=np.float32)]
    assert l2_norm(upd) == pytest.approx(5.0)
    clipped, norm = clip_update(upd, 1.0)
    assert norm == pytest.approx(5.0)
    np.testing.assert_allclose(clipped[0], [0.6, 0.0], rtol=1e-6)
    np.testing.assert_allclose(clipped[1], [[0.8]], rtol=1e-6)
    same, _ = clip_update(upd, 10.0)  # inside the ball: untouched
    np.testing.assert_array_equal(same[0], upd[0])


def test_dp_mean_without_noise_is_mean_of_clipped() -> None:
    a = [np.array([3.0, 4.0])]  # norm 5 -> clipped to (0.6, 0.8)
    b = [np.array([0.1, 0.0])]  # inside
    rng = np.random.default_rng(0)
    mean, norms = dp_mean([a, b], clip_norm=1.0, noise_multiplier=1e-12, rng=rng)
    np.testing.assert_allclose(mean[0], [0.35, 0.4], atol=1e-6)
    assert norms == pytest.approx([5.0, 0.1])


def test_dp_mean_noise_std_is_z_c_over_n() -> None:
    n, z, c = 10, 2.0, 0.5
    zeros = [[np.zeros(200_000)] for _ in range(n)]
    mean, _ = dp_mean(zeros, clip_norm=c, noise_multiplier=z, rng=np.random.default_rng(1))
    assert float(np.std(mean[0])) == pytest.approx(z * c / n, rel=0.01)


def test_adaptive_clipping_hand_computed_and_converges() -> None:
    # C * exp(-eta (b - gamma)) = 2 * exp(-0.2 * 0.5)
    assert adaptive_clip_update(2.0, 1.0, 0.5, 0.2) == pytest.approx(2.0 * math.exp(-0.1))
    # Andrew et al.: z_delta = (z^-2 - (2 sigma_b)^-2)^-1/2
    assert update_noise_multiplier(1.0, 1.0) == pytest.approx((1 - 0.25) ** -0.5)
    with pytest.raises(ConfigError, match="clipped_count_stddev"):
        update_noise_multiplier(2.0, 0.5)
    # The clip norm tracks the median of update norms (norms uniform in [0, 2] -> median 1).
    cfg = DPConfig(noise_multiplier=0.5, clip_norm=0.1, clipping=ClipMode.ADAPTIVE, clip_lr=0.5)
    dp = DifferentialPrivacy(cfg, population=10_000)
    rng = np.random.default_rng(3)
    for _ in range(50):
        norms = rng.uniform(0, 2, size=100)
        ups = [[np.array([nrm])] for nrm in norms]
        dp.aggregate(ups, rng)
    assert dp.clip_norm == pytest.approx(1.0, abs=0.15)


def test_accountant_matches_library_for_sampling_without_replacement() -> None:
    m, n, z, rounds, delta = 10, 1000, 1.1, 25, 1e-5
    acc = PrivacyAccountant(delta)
    for _ in range(rounds):
        eps = acc.step(m, n, z)
    # The engine draws m of n devices without replacement: dp-accounting's own event for
    # that, under replace-one, where the sum of C-clipped updates has sensitivity 2C.
    ref = dp_accounting.rdp.RdpAccountant(
        neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE
    )
    ref.compose(
        dp_accounting.SelfComposedDpEvent(
            dp_accounting.SampledWithoutReplacementDpEvent(
                n, m, dp_accounting.GaussianDpEvent(z / 2)
            ),
            rounds,
        )
    )
    assert eps == pytest.approx(ref.get_epsilon(delta), rel=1e-9)
    assert epsilon_for(m, n, z, rounds, delta) == pytest.approx(eps, rel=1e-9)
    # Full participation (m = n) is the plain Gaussian mechanism with multiplier z / 2.
    full = dp_accounting.rdp.RdpAccountant()
    full.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(z / 2), 3))
    assert epsilon_for(7, 7, z, 3, delta) == pytest.approx(full.get_epsilon(delta), rel=1e-6)
    # Not the Poisson event the engine does not run: that one is smaller (add/remove, C).
    poisson = dp_accounting.rdp.RdpAccountant()
    poisson.compose(
        dp_accounting.SelfComposedDpEvent(
            dp_accounting.PoissonSampledDpEvent(m / n, dp_accounting.GaussianDpEvent(z)), rounds
        )
    )
    assert poisson.get_epsilon(delta) < 0.8 * eps
    # Rebuilding from the saved state gives the same epsilon.
    again = PrivacyAccountant.from_state(acc.state())
    assert again.epsilon() == pytest.approx(eps, rel=1e-12)
    assert acc.epsilon_after(m, n, z) > eps == acc.epsilon()
    with pytest.raises(DataError, match="sample, population, z"):
        PrivacyAccountant.from_state({"delta": 1e-5, "history": [[0.1, 1.0]]})


def test_noise_multiplier_calibration_hits_target() -> None:
    z = noise_multiplier_for_epsilon(4.0, 50, 1000, 50, 1e-5)
    assert epsilon_for(50, 1000, z, 50, 1e-5) <= 4.0 + 1e-3
    assert epsilon_for(50, 1000, z * 0.95, 50, 1e-5) > 4.0


def test_dp_round_records_epsilon_and_budget_stop() -> None:
    cfg = DPConfig(noise_multiplier=2.0, clip_norm=1.0, target_epsilon=6.0, target_delta=1e-5)
    dp = DifferentialPrivacy(cfg, population=100)
    dp.check_budget(10)
    rng = np.random.default_rng(0)
    eps = []
    while dp.next_round_allowed(10):
        _, rec = dp.aggregate([[np.ones(3)] for _ in range(10)], rng)
        eps.append(rec.epsilon)
        assert len(eps) < 10_000
    assert eps and all(e <= 6.0 for e in eps)
    assert eps == sorted(eps)
    assert dp.accountant.epsilon_after(10, 100, 2.0) > 6.0


def test_budget_warn_keeps_going(caplog: pytest.LogCaptureFixture) -> None:
    cfg = DPConfig(noise_multiplier=5.0, target_epsilon=0.5, on_budget="warn")
    dp = DifferentialPrivacy(cfg, population=10)
    rng = np.random.default_rng(0)
    for _ in range(200):
        if not dp.next_round_allowed(10):
            pytest.fail("warn mode must not stop")
        dp.aggregate([[np.ones(2)] for _ in range(10)], rng)
        if dp.accountant.epsilon() > 0.5:
            break
    assert dp.accountant.epsilon() > 0.5
    assert "DP budget exceeded" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"noise_multiplier": 0.0}, "noise_multiplier must be > 0"),
        ({"noise_multiplier": -1.0}, "noise_multiplier must be > 0"),
        ({"clip_norm": 0.0}, "clip_norm must be > 0"),
        ({"clip_norm": float("nan")}, "clip_norm must be > 0"),
        ({"target_epsilon": -1.0}, "target_epsilon must be > 0"),
        ({"target_delta": 1.5}, "target_delta"),
        ({"clipping": "median"}, "dp.clipping must be one of"),
        ({"target_quantile": 1.0}, "target_quantile"),
    ],
)
def test_bad_config(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        DPConfig(**kwargs)  # type: ignore[arg-type]


def test_target_epsilon_already_exceeded() -> None:
    dp = DifferentialPrivacy(DPConfig(noise_multiplier=0.3, target_epsilon=0.1), population=10)
    with pytest.raises(ConfigError, match="already exceeded by a single round"):
        dp.check_budget(10)
    dp2 = DifferentialPrivacy(DPConfig(noise_multiplier=1.0, target_epsilon=1.0), population=10)
    dp2.load_state(
        {
            "clip_norm": 1.0,
            "accountant": {"delta": 1e-5, "history": [[10, 10, 1.0]] * 5},
            "records": [],
        }
    )
    with pytest.raises(ConfigError, match="already exceeded"):
        dp2.check_budget(10)


def test_bad_updates() -> None:
    with pytest.raises(DataError, match="NaN"):
        clip_update([np.array([np.nan])], 1.0)
    with pytest.raises(DataError, match="shapes"):
        dp_mean([[np.ones(2)], [np.ones(3)]], 1.0, 1.0, np.random.default_rng(0))
    with pytest.raises(DataError, match="at least one"):
        dp_mean([], 1.0, 1.0, np.random.default_rng(0))
