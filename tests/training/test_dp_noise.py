"""The noise every DP path really adds, measured, against what the accountant assumes.

Each test feeds all-zero updates through a real aggregation path, so the output is
the noise alone, and compares its empirical standard deviation with the hand-computed
std the accounted noise multiplier requires. Removing the noise, or not raising it
under adaptive clipping, makes these fail.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeintel.training.dp import ClipMode, DifferentialPrivacy, DPConfig
from edgeintel.training.flower.settings import FlowerSettings
from edgeintel.training.flower.strategy import EdgeIntelStrategy, combine_updates
from edgeintel.training.private import PrivacyStrategy
from edgeintel.training.rounds import Tier
from edgeintel.training.secagg import SecAggConfig
from edgeintel.training.strategy import AggregationContext


def _ctx(seed: int = 0) -> AggregationContext:
    return AggregationContext(
        round=1, sub_round=0, tier=Tier.FLAT, node="cloud", clients=(), f=0,
        rng=np.random.default_rng(seed),
    )  # fmt: skip


def _zeros(n: int, dim: int) -> tuple[list[np.ndarray], np.ndarray]:
    return [np.zeros(dim, np.float32) for _ in range(n)], np.ones(n)


def test_fixed_clipping_adds_z_c_over_n_and_accounts_z() -> None:
    z, c, n = 1.5, 0.4, 10
    strat = PrivacyStrategy(
        dp=DPConfig(noise_multiplier=z, clip_norm=c), population=40, clients_per_round=n
    )
    out = strat.aggregate(*_zeros(n, 200_000), _ctx())
    # hand-computed: 1.5 * 0.4 / 10 = 0.06 on the mean
    assert float(np.std(out)) == pytest.approx(0.06, rel=0.02)
    assert abs(float(np.mean(out))) < 0.001
    assert strat.dp is not None
    assert strat.dp.accountant.history == [(n, 40, z)]  # what the accountant assumes
    assert strat.dp.records[-1].noise_std == pytest.approx(0.06)


def test_adaptive_clipping_raises_the_update_noise() -> None:
    # z = 1, sigma_b = 0.6: the update noise must be raised to
    # (1 - (2 * 0.6)^-2)^-1/2 = (1 - 0.69444)^-1/2 = 1.80907 so that the pair (update,
    # clipped count) together is the accounted Gaussian mechanism with multiplier 1.
    z, c, n, sigma_b = 1.0, 0.5, 8, 0.6
    cfg = DPConfig(
        noise_multiplier=z, clip_norm=c, clipping=ClipMode.ADAPTIVE, clipped_count_stddev=sigma_b
    )
    strat = PrivacyStrategy(dp=cfg, population=16, clients_per_round=n)
    out = strat.aggregate(*_zeros(n, 200_000), _ctx())
    z_update = 1.80907
    assert float(np.std(out)) == pytest.approx(z_update * c / n, rel=0.02)
    assert strat.dp is not None
    assert strat.dp.accountant.history == [(n, 16, z)]
    # measured multipliers compose back to the accounted one: (z_u^-2 + (2 sb)^-2)^-1/2 = z
    z_meas = float(np.std(out)) * n / c
    assert (z_meas**-2 + (2 * sigma_b) ** -2) ** -0.5 == pytest.approx(z, rel=0.02)


def test_default_clipped_count_noise_is_n_over_20() -> None:
    # sigma_b defaults to n / 20 = 1 for n = 20; z = 1.2 -> z_u = (0.69444 - 0.25)^-1/2 = 1.5
    n, c = 20, 1.0
    cfg = DPConfig(noise_multiplier=1.2, clip_norm=c, clipping=ClipMode.ADAPTIVE)
    strat = PrivacyStrategy(dp=cfg, population=20)
    out = strat.aggregate(*_zeros(n, 200_000), _ctx())
    assert float(np.std(out)) == pytest.approx(1.5 * c / n, rel=0.02)


@pytest.mark.parametrize("dropout", [0.0, 0.25])
def test_secure_aggregation_keeps_the_noise(dropout: float) -> None:
    # devices clip, the server adds noise to the unmasked sum: std z * C / survivors
    z, c, n = 2.0, 0.3, 8
    strat = PrivacyStrategy(
        dp=DPConfig(noise_multiplier=z, clip_norm=c),
        secagg=SecAggConfig(),
        population=8,
        secagg_dropout=dropout,
    )
    out = strat.aggregate(*_zeros(n, 100_000), _ctx())
    survivors = n - int(np.floor(dropout * n))
    assert float(np.std(out)) == pytest.approx(z * c / survivors, rel=0.02)
    assert strat.dp is not None
    assert strat.dp.accountant.history == [(n, 8, z)]
    assert strat.dp.records[-1].noise_std == pytest.approx(z * c / survivors)


def test_noise_comes_from_os_entropy_unless_reproducible() -> None:
    """The engine's generator is seeded from the scenario seed: DP noise must not be."""
    outs = []
    for _ in range(2):
        strat = PrivacyStrategy(dp=DPConfig(noise_multiplier=1.0), population=4)
        outs.append(strat.aggregate(*_zeros(4, 1000), _ctx(seed=7)))
    assert not np.array_equal(outs[0], outs[1])
    rep = []
    for _ in range(2):
        strat = PrivacyStrategy(
            dp=DPConfig(noise_multiplier=1.0, reproducible_noise=True), population=4
        )
        rep.append(strat.aggregate(*_zeros(4, 1000), _ctx(seed=7)))
    np.testing.assert_array_equal(rep[0], rep[1])
    # secure aggregation path too
    sec = []
    for _ in range(2):
        strat = PrivacyStrategy(
            dp=DPConfig(noise_multiplier=1.0), secagg=SecAggConfig(), population=4
        )
        sec.append(strat.aggregate(*_zeros(4, 1000), _ctx(seed=7)))
    assert not np.array_equal(sec[0], sec[1])


def test_flower_server_noise_is_not_derived_from_the_run_config() -> None:
    """Every client receives the run config (with its seed); the server's noise must differ
    between two servers built from the identical config."""
    settings = FlowerSettings(dp_noise_multiplier=1.0, dp_clip_norm=1.0)
    outs = []
    for _ in range(2):
        strat = EdgeIntelStrategy(settings, [(1000,)])
        cfg = settings.dp_config()
        assert cfg is not None
        dp = DifferentialPrivacy(cfg, population=4)
        ups, w = _zeros(4, 1000)
        mean, _ = combine_updates(ups, list(w), settings, dp, strat.rng, num_sampled=4)
        outs.append(mean)
        assert float(np.std(mean)) == pytest.approx(0.25, rel=0.15)  # z C / n = 1 / 4
    assert not np.array_equal(outs[0], outs[1])
    a = EdgeIntelStrategy(settings, [(3,)]).rng.random(4)
    b = EdgeIntelStrategy(settings, [(3,)]).rng.random(4)
    assert not np.array_equal(a, b)


def _sampler(secret: bool) -> list[list[int]]:
    """The devices an engine samples over 12 rounds (5 of 20), seed 0."""
    from torch import nn

    from edgeintel.training.engine import FederatedEngine
    from edgeintel.training.rounds import ClientSpec, FederatedConfig

    x = np.zeros((40, 3), np.float32)
    y = np.arange(40) % 2
    cfg = FederatedConfig(rounds=12, clients_per_round=5, seed=0, secret_sampling=secret)
    eng = FederatedEngine(
        nn.Linear(3, 2), x, y, [np.arange(2 * i, 2 * i + 2) for i in range(20)],
        [ClientSpec(f"d{i}", "cloud") for i in range(20)], x, y, cfg,
    )  # fmt: skip
    return [eng._sample(r, 0) for r in range(1, 13)]


def test_client_sampling_is_secret_under_dp_unless_reproducible() -> None:
    """DP amplification by sampling assumes nobody can predict the sample: with DP the
    engine samples from OS entropy (two engines with one seed differ), uniformly without
    replacement as the accountant assumes; a reproducible simulation samples by seed."""
    from edgeintel.scenario import parse_scenario
    from edgeintel.training.scenario_train import federated_config
    from edgeintel.training.settings import TrainingMode

    from ..conftest import tiny_scenario_dict

    a, b = _sampler(True), _sampler(True)
    assert a != b  # 12 rounds of C(20, 5): equal by chance with probability ~ 1e-52
    assert all(len(s) == len(set(s)) == 5 and set(s) <= set(range(20)) for s in a)
    assert _sampler(False) == _sampler(False)
    # every device is drawn about equally often (uniform sample, 5/20 per round)
    counts = np.bincount(
        np.concatenate([np.concatenate(_sampler(True)) for _ in range(40)]), minlength=20
    )
    assert counts.min() > 0.6 * counts.mean() and counts.max() < 1.4 * counts.mean()

    def cfg(dp: dict[str, object] | None) -> bool:
        raw = tiny_scenario_dict()
        raw["settings"]["training"].update(dp=dp, clients_per_round=2)
        sc = parse_scenario(raw)
        return federated_config(sc.settings.training, TrainingMode.FEDERATED, 0).secret_sampling

    assert cfg({"noise_multiplier": 1.0}) is True
    assert cfg({"noise_multiplier": 1.0, "reproducible_noise": True}) is False
    assert cfg(None) is False  # without DP the seed keeps runs bit-for-bit reproducible
