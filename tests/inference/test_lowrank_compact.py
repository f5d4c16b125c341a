"""Low-rank factorization (truncated SVD) and compact depthwise-separable layers."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgeintel.errors import ConfigError
from edgeintel.inference import (
    LowRankConfig,
    MeasureConfig,
    choose_rank,
    compress,
    factorize_conv,
    factorize_linear,
    low_rank,
    reconstruction_error,
    separable_factors,
    to_separable,
    truncated_svd,
)

from .conftest import Trained

FAST = MeasureConfig(runs=5, warmup=1)


def test_reconstruction_error_falls_as_rank_grows() -> None:
    w = np.random.default_rng(0).normal(size=(24, 40))
    errs = [reconstruction_error(w, r) for r in range(1, 25)]
    assert all(b < a for a, b in itertools.pairwise(errs))
    assert errs[-1] < 1e-6
    # Eckart-Young: the error is the energy of the dropped singular values
    s = np.linalg.svd(w, compute_uv=False)
    for r in (1, 5, 12):
        assert errs[r - 1] == pytest.approx(np.sqrt((s[r:] ** 2).sum() / (s**2).sum()), rel=1e-4)


def test_truncated_svd_rank_one_by_hand() -> None:
    w = np.outer([1.0, 2.0], [3.0, 0.0, 4.0])  # rank 1, singular value sqrt(5) * 5
    a, b = truncated_svd(w, 1)
    assert a.shape == (2, 1) and b.shape == (1, 3)
    np.testing.assert_allclose(a @ b, w, atol=1e-5)
    with pytest.raises(ConfigError, match=r"rank must lie in \[1, 2\]"):
        truncated_svd(w, 3)


def test_choose_rank_by_energy_and_size() -> None:
    s = np.array([3.0, 2.0, 1.0, 0.0])  # energies 9, 4, 1 of 14
    assert choose_rank(s, (4, 4), 0.6, None) == 1  # 9/14 = 0.64
    assert choose_rank(s, (4, 4), 0.9, None) == 2  # 13/14 = 0.93
    assert choose_rank(s, (4, 4), 1.0, None) == 3
    assert choose_rank(np.ones(100), (100, 300), None, 0.5) == 37  # 37 * 400 <= 0.5 * 30000


def test_factorized_layers_match_at_full_rank() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(12, 7)
    x = torch.randn(3, 12)
    with torch.no_grad():
        np.testing.assert_allclose(factorize_linear(lin, 7)(x), lin(x), atol=1e-5)
    conv = nn.Conv1d(4, 6, 5, padding=2, stride=2)
    xc = torch.randn(2, 4, 20)
    fc = factorize_conv(conv, 6)
    assert fc[0].weight.shape == (6, 4, 5) and fc[1].weight.shape == (6, 6, 1)
    with torch.no_grad():
        np.testing.assert_allclose(fc(xc), conv(xc), atol=1e-5)


def test_low_rank_config_validation() -> None:
    assert LowRankConfig(param_ratio=0.3).energy is None
    with pytest.raises(ConfigError, match="energy must lie in"):
        LowRankConfig(energy=1.5)
    with pytest.raises(ConfigError, match="exactly one of energy or param_ratio"):
        LowRankConfig(energy=0.8, param_ratio=0.3)


def test_low_rank_reports_layers_it_keeps() -> None:
    net = nn.Sequential(nn.Conv2d(4, 4, 3, groups=4), nn.Flatten(), nn.Linear(36, 2))
    _, warns, ranks = low_rank(net, 0.9, None)
    assert ranks == {}
    assert any(w.startswith("0 (Conv2d groups=4): grouped conv not factorized") for w in warns)
    assert any(w.startswith("2 (Linear 2x36): rank") for w in warns)


def test_low_rank_end_to_end_on_digits(digits_cnn: Trained, tmp_path: Path) -> None:
    res = compress(
        digits_cnn.model,
        [("low_rank", {"energy": 0.9})],
        digits_cnn.train,
        eval_data=digits_cnn.test,
        workdir=tmp_path,
        measure=FAST,
    )
    b, f = res.baseline, res.final
    assert f.params < 0.85 * b.params and f.onnx_bytes < b.onnx_bytes and f.macs < b.macs
    assert f.accuracy >= b.accuracy - 0.05
    assert res.stages[1].info["ranks"]


def test_separable_factors_exact_for_separable_kernels() -> None:
    rng = np.random.default_rng(0)
    dw = rng.normal(size=(3, 1, 3, 3))
    pw = rng.normal(size=(5, 3, 1, 1))
    w = pw * dw[:, 0][None]  # W[o, i] = p[o, i] * d_i
    d2, p2 = separable_factors(w)
    np.testing.assert_allclose(p2 * d2[:, 0][None], w, atol=1e-5)


def test_to_separable_replaces_convs_and_names_kept_ones() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1))
    new, warns, done = to_separable(net)
    assert done == ["2"] and warns == ["0 (Conv2d 1->8): fewer than 4 input channels; kept"]
    sep = new[2]
    assert sep[0].groups == 8 and sep[0].weight.shape == (8, 1, 3, 3)
    assert sep[1].weight.shape == (16, 8, 1, 1)
    assert sum(p.numel() for p in new.parameters()) < sum(p.numel() for p in net.parameters())
    assert new(torch.zeros(2, 1, 8, 8)).shape == (2, 16, 8, 8)


def test_compact_end_to_end_on_digits(digits_cnn: Trained, tmp_path: Path) -> None:
    res = compress(
        digits_cnn.model,
        ["compact"],
        digits_cnn.train,
        eval_data=digits_cnn.test,
        workdir=tmp_path,
        measure=FAST,
    )
    b, f = res.baseline, res.final
    assert f.onnx_bytes < 0.5 * b.onnx_bytes and f.macs < 0.5 * b.macs
    assert f.accuracy >= b.accuracy - 0.12
    assert res.warnings == ["compact: 0 (Conv2d 1->16): fewer than 4 input channels; kept"]


def _rank_net() -> nn.Sequential:
    """Conv2d 3->6 (3x3) of rank 1 and Linear 24->8 of rank 2, both exactly low rank."""
    net = nn.Sequential(nn.Conv2d(3, 6, 3), nn.Flatten(), nn.Linear(24, 8))
    rng = np.random.default_rng(0)
    conv_w = np.outer(rng.normal(size=6), rng.normal(size=27)).reshape(6, 3, 3, 3)
    lin_w = rng.normal(size=(8, 2)) @ rng.normal(size=(2, 24))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(conv_w, dtype=torch.float32))
        net[2].weight.copy_(torch.tensor(lin_w, dtype=torch.float32))
    return net


@pytest.mark.parametrize(
    ("layers", "expect"),
    [
        # rank 1 of a 6x27 conv (1 * 33 < 162 weights) and rank 2 of an 8x24 linear
        ("all", {"0": {"rank": 1, "full_rank": 6}, "2": {"rank": 2, "full_rank": 8}}),
        ("conv", {"0": {"rank": 1, "full_rank": 6}}),
        ("linear", {"2": {"rank": 2, "full_rank": 8}}),
    ],
)
def test_low_rank_layers_selects_what_is_factorized(
    layers: str, expect: dict[str, dict[str, int]]
) -> None:
    from edgeintel.inference import lowrank

    net = _rank_net()
    new, _, ranks = low_rank(net, 0.999, None, layers=layers)
    assert ranks == expect
    assert isinstance(new[0], nn.Conv2d) == ("0" not in expect)
    assert isinstance(new[2], nn.Linear) == ("2" not in expect)
    x = torch.randn(2, 3, 4, 4)
    with torch.no_grad():  # exactly low rank: the factorized net computes the same
        np.testing.assert_allclose(new(x), net(x), atol=1e-4)
    # the registered compression stage passes its ``layers`` option through
    cfg = LowRankConfig(energy=0.999, layers=layers, finetune_epochs=0)
    stage = lowrank._low_rank(net, cfg, None)  # type: ignore[arg-type]
    assert stage.info["ranks"] == expect
