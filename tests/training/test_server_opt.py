"""Server optimizers (Reddi et al. 2021) against hand-computed steps."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgeintel.training.server_opt import Algorithm, ServerOptConfig, server_step


def test_fedavg_adds_the_scaled_delta() -> None:
    cfg = ServerOptConfig(algorithm=Algorithm.FEDAVG, server_lr=0.5)
    w, st = server_step(np.array([1.0, 2.0]), np.array([2.0, -4.0]), {}, cfg)
    np.testing.assert_allclose(w, [2.0, 0.0])
    assert st == {}


def test_fedavgm_accumulates_momentum() -> None:
    # v1 = 1, w1 = 0 + 1 = 1;  v2 = 0.9 * 1 + 1 = 1.9, w2 = 1 + 1.9 = 2.9;
    # v3 = 0.9 * 1.9 + 0 = 1.71, w3 = 2.9 + 1.71 = 4.61 (momentum keeps moving on a zero delta)
    cfg = ServerOptConfig(algorithm=Algorithm.FEDAVGM, server_lr=1.0, momentum=0.9)
    w, st = np.zeros(1, np.float32), {}
    expect_w, expect_v = [1.0, 2.9, 4.61], [1.0, 1.9, 1.71]
    for delta, ew, ev in zip([1.0, 1.0, 0.0], expect_w, expect_v, strict=True):
        w, st = server_step(w, np.array([delta]), st, cfg)
        assert float(w[0]) == pytest.approx(ew, rel=1e-6)
        assert float(st["v"][0]) == pytest.approx(ev, rel=1e-6)


def test_fedadam_divides_by_the_root_of_the_second_moment() -> None:
    # b1 = 0.9, b2 = 0.99, tau = 1e-3, lr = 0.1, delta = 2 then -1:
    # m1 = 0.1 * 2 = 0.2, v1 = 0.01 * 4 = 0.04, step1 = 0.1 * 0.2 / (0.2 + 0.001) = 0.0995025
    # m2 = 0.18 - 0.1 = 0.08, v2 = 0.0396 + 0.01 = 0.0496,
    # step2 = 0.1 * 0.08 / (sqrt(0.0496) + 0.001) = 0.008 / 0.2237110 = 0.0357604
    cfg = ServerOptConfig(algorithm=Algorithm.FEDADAM, server_lr=0.1, beta1=0.9, beta2=0.99)
    w, st = server_step(np.zeros(1, np.float32), np.array([2.0]), {}, cfg)
    assert float(w[0]) == pytest.approx(0.1 * 0.2 / (0.2 + 1e-3), rel=1e-5)
    assert float(w[0]) == pytest.approx(0.0995025, rel=1e-5)
    np.testing.assert_allclose([st["m"][0], st["v"][0]], [0.2, 0.04], rtol=1e-6)
    w2, st2 = server_step(w, np.array([-1.0]), st, cfg)
    step2 = 0.1 * 0.08 / (math.sqrt(0.0496) + 1e-3)
    assert step2 == pytest.approx(0.0357604, rel=1e-5)
    assert float(w2[0]) == pytest.approx(0.0995025 + 0.0357604, rel=1e-5)
    np.testing.assert_allclose([st2["m"][0], st2["v"][0]], [0.08, 0.0496], rtol=1e-5)
