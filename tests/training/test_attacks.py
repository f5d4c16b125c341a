"""Attacks: ALIE's z from n and f, sign flip, noise, label flip."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from edgeintel.errors import ConfigError
from edgeintel.training.attacks import ATTACKS, AttackConfig, alie_z, make_attack


def test_alie_z_from_n_and_f() -> None:
    # n=50, f=10: s = floor(26) - 10 = 16, z = Phi^-1(34/50)
    assert alie_z(50, 10) == pytest.approx(norm.ppf(0.68))
    assert alie_z(50, 10) == pytest.approx(0.4677, abs=1e-4)
    # n=20, f=4: s = 11 - 4 = 7, z = Phi^-1(13/20)
    assert alie_z(20, 4) == pytest.approx(norm.ppf(0.65))
    with pytest.raises(ConfigError):
        alie_z(10, 6)


def test_update_attacks() -> None:
    honest = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 0.0], [7.0, 2.0]], np.float32)
    bad = np.array([False, True, False, True])
    rng = np.random.default_rng(0)
    out = make_attack(AttackConfig(name="sign_flip", scale=2.0)).poison_updates(honest, bad, rng)
    np.testing.assert_array_equal(out, [[1, 2], [-6, -8], [5, 0], [-14, -4]])
    out = make_attack(AttackConfig(name="alie")).poison_updates(honest, bad, rng)
    z = alie_z(4, 2)
    mu, sd = honest.mean(0), honest.std(0)
    np.testing.assert_allclose(out[1], mu - z * sd, rtol=1e-6)
    np.testing.assert_allclose(out[3], mu - z * sd, rtol=1e-6)
    np.testing.assert_array_equal(out[[0, 2]], honest[[0, 2]])
    noisy = make_attack(AttackConfig(name="gaussian_noise", sigma=3.0)).poison_updates(
        np.zeros((2, 20000), np.float32), np.array([True, False]), rng
    )
    assert noisy[0].std() == pytest.approx(3.0, rel=0.05) and not noisy[1].any()


def test_label_flip_and_registry() -> None:
    flip = make_attack(AttackConfig(name="label_flip"))
    np.testing.assert_array_equal(flip.poison_labels(np.array([0, 3, 9]), 10), [9, 6, 0])
    assert set(ATTACKS) == {"sign_flip", "gaussian_noise", "label_flip", "alie", "ipm"}
    with pytest.raises(ConfigError, match="fraction"):
        AttackConfig(fraction=1.0)


def test_ipm_sends_minus_epsilon_times_the_honest_mean() -> None:
    honest = np.array([[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]], dtype=np.float32)
    bad = np.array([False, False, True])
    out = make_attack(AttackConfig(name="ipm", epsilon=2.0)).poison_updates(
        honest, bad, np.random.default_rng(0)
    )
    # honest mean (2, 3) -> malicious row -2 * (2, 3) = (-4, -6); honest rows unchanged
    np.testing.assert_allclose(out, [[1, 2], [3, 4], [-4, -6]])
    # the plain mean then points against the honest direction when epsilon > (n - f) / f = 2
    strong = make_attack(AttackConfig(name="ipm", epsilon=3.0)).poison_updates(
        honest, bad, np.random.default_rng(0)
    )
    assert float(strong.mean(0) @ np.array([2.0, 3.0])) < 0
    with pytest.raises(ConfigError, match="IPM epsilon"):
        AttackConfig(name="ipm", epsilon=0.0)
