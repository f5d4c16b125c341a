"""Update compressors: exact wire sizes, round trips, error-feedback exactness."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgeintel.errors import ConfigError, DataError
from edgeintel.training.compressors import (
    UPDATE_COMPRESSORS,
    CompressorConfig,
    TopK,
    compress_with_feedback,
    make_compressor,
)


def _vec(d: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(d).astype(np.float32)


@pytest.mark.parametrize("d", [1, 100, 1000, 5000, 70_000])
def test_byte_counts_equal_the_serialized_payload(d: int) -> None:
    v = _vec(d)
    k = max(1, math.ceil(0.01 * d))
    isz = 2 if d <= 65536 else 4
    expected = {
        "none": 4 * d,
        "topk": k * (isz + 4),
        "int8": d + 8 * math.ceil(d / 1024),
        "sign": math.ceil(d / 8) + 4 * math.ceil(d / 1024),
    }
    for name in UPDATE_COMPRESSORS:
        comp = make_compressor(CompressorConfig(name=name))
        blob = comp.encode(v)
        assert isinstance(blob, bytes)
        assert len(blob) == expected[name], name


def test_topk_payload_is_indices_then_values() -> None:
    v = np.array([0.1, -5.0, 0.2, 3.0, 0.0], np.float32)
    blob = TopK(0.4).encode(v)  # k = 2: indices 1 and 3
    assert (
        blob == np.array([1, 3], np.uint16).tobytes() + np.array([-5.0, 3.0], np.float32).tobytes()
    )
    np.testing.assert_array_equal(TopK(0.4).decode(blob, 5), [0, -5, 0, 3, 0])


def test_roundtrips() -> None:
    v = _vec(3000, 1)
    np.testing.assert_array_equal(make_compressor(CompressorConfig()).roundtrip(v)[1], v)
    _, q = make_compressor(CompressorConfig(name="int8", block_size=256)).roundtrip(v)
    step = np.array([(b.max() - b.min()) / 255 for b in np.array_split(v, range(256, 3000, 256))])
    err = np.abs(q - v)
    assert err.max() <= step.max() / 2 + 1e-6
    _, s = make_compressor(CompressorConfig(name="sign", block_size=3000)).roundtrip(v)
    np.testing.assert_array_equal(np.sign(s), np.where(v >= 0, 1.0, -1.0))
    np.testing.assert_allclose(np.abs(s), np.abs(v).mean(), rtol=1e-6)


def test_error_feedback_residual_carries_exactly_what_topk_dropped() -> None:
    comp = TopK(0.1)
    u = _vec(200, 2)
    old = _vec(200, 3) * 0.1
    _blob, sent, res = compress_with_feedback(comp, u, old)
    corrected = u + old
    kept = np.flatnonzero(sent)
    assert len(kept) == 20
    # the kept entries are the 20 largest magnitudes of update + old residual
    assert np.abs(corrected[kept]).min() >= np.sort(np.abs(corrected))[-20]
    np.testing.assert_array_equal(res[kept], 0.0)
    dropped = np.setdiff1d(np.arange(200), kept)
    np.testing.assert_array_equal(res[dropped], corrected[dropped])
    np.testing.assert_array_equal(sent + res, corrected)
    # over rounds, everything is eventually sent: sum(sent) + residual == sum(updates)
    total_sent, r = np.zeros(200, np.float32), None
    ups = [_vec(200, 10 + i) for i in range(30)]
    for x in ups:
        _, s, r = compress_with_feedback(comp, x, r)
        total_sent += s
    np.testing.assert_allclose(total_sent + r, np.sum(ups, axis=0), atol=1e-4)


def test_bad_config_and_payload() -> None:
    with pytest.raises(ConfigError, match="unknown update compressor"):
        CompressorConfig(name="zip")
    with pytest.raises(ConfigError, match="ratio"):
        CompressorConfig(name="topk", ratio=0)
    with pytest.raises(DataError, match="expected"):
        TopK(0.5).decode(b"\x00" * 5, 10)
    assert CompressorConfig(name="topk").uses_feedback
    assert not CompressorConfig(name="int8").uses_feedback


def test_dgc_momentum_correction_by_hand() -> None:
    """DGC (Lin et al. 2018): u = m u + g, v = v + u, send top-k(v), clear u and v there."""
    from edgeintel.training.compressors import compress_with_momentum

    comp = make_compressor(CompressorConfig(name="topk", ratio=0.25, momentum=0.5))  # k = 1
    g1 = np.array([1.0, 0.5, -0.2, 0.1], np.float32)
    _, sent, res, vel = compress_with_momentum(comp, g1, None, None, 0.5)
    np.testing.assert_allclose(sent, [1.0, 0, 0, 0])
    np.testing.assert_allclose(res, [0, 0.5, -0.2, 0.1], atol=1e-7)
    np.testing.assert_allclose(vel, [0, 0.5, -0.2, 0.1], atol=1e-7)  # factor masking at 0
    g2 = np.full(4, 0.1, np.float32)
    # u = 0.5 * [0, .5, -.2, .1] + .1 = [.1, .35, 0, .15]; v = res + u = [.1, .85, -.2, .25]
    _, sent, res, vel = compress_with_momentum(comp, g2, res, vel, 0.5)
    np.testing.assert_allclose(sent, [0, 0.85, 0, 0], atol=1e-7)
    np.testing.assert_allclose(res, [0.1, 0, -0.2, 0.25], atol=1e-7)
    np.testing.assert_allclose(vel, [0.1, 0, 0, 0.15], atol=1e-7)
    # momentum 0 is plain error feedback
    _, sent0, res0, _ = compress_with_momentum(comp, g2, np.array([0, 0.5, -0.2, 0.1]), None, 0.0)
    np.testing.assert_allclose(sent0 + res0, [0.1, 0.6, -0.1, 0.2], atol=1e-7)


def test_momentum_needs_topk_with_feedback() -> None:
    with pytest.raises(ConfigError, match="momentum"):
        CompressorConfig(name="sign", momentum=0.5)
    with pytest.raises(ConfigError, match="momentum"):
        CompressorConfig(name="topk", momentum=0.5, error_feedback=False)
    with pytest.raises(ConfigError, match="momentum"):
        CompressorConfig(name="topk", momentum=1.0)
