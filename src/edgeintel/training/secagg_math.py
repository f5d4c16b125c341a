"""Secure aggregation's arithmetic: Shamir sharing over GF(2^130 - 5) and fixed-point
encoding in the ring Z_{2^R} (R = 32 or 64) that pairwise masks cancel in exactly."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from edgeintel.errors import ConfigError, DataError

__all__ = [
    "RING_DTYPES",
    "decode_fixed_point",
    "encode_fixed_point",
    "shamir_combine",
    "shamir_split",
]

#: Shamir's field: the prime 2^130 - 5 (above every 16-byte secret)
P = (1 << 130) - 5
SHARE_BYTES = 17
RING_DTYPES: dict[int, type[np.unsignedinteger]] = {32: np.uint32, 64: np.uint64}


def shamir_split(t: int, n: int, secret: bytes) -> list[bytes]:
    """``n`` Shamir shares (17 bytes each; share ``j`` is the polynomial at ``x = j + 1``)
    of a 16-byte ``secret`` over GF(2^130 - 5); any ``t`` of them reconstruct it."""
    if not 1 <= t <= n:
        raise ConfigError(f"Shamir threshold must lie in [1, {n}], got {t}")
    coef = [int.from_bytes(secret, "big")] + [
        int.from_bytes(os.urandom(17), "big") % P for _ in range(t - 1)
    ]
    out = []
    for x in range(1, n + 1):
        acc = 0
        for c in reversed(coef):  # Horner
            acc = (acc * x + c) % P
        out.append(acc.to_bytes(SHARE_BYTES, "big"))
    return out


def shamir_combine(shares: Sequence[tuple[int, bytes]]) -> bytes:
    """The 16-byte secret from ``t`` shares ``(x, share)`` (Lagrange at 0)."""
    xs = [x for x, _ in shares]
    if len(set(xs)) != len(xs) or any(x < 1 for x in xs):
        raise DataError(f"Shamir shares need distinct positive indices, got {xs}")
    secret = 0
    for j, (xj, yj) in enumerate(shares):
        num = den = 1
        for m, xm in enumerate(xs):
            if m != j:
                num = num * xm % P
                den = den * (xm - xj) % P
        secret = (secret + int.from_bytes(yj, "big") * num * pow(den, -1, P)) % P
    if secret >= 1 << 128:
        raise DataError("Shamir shares do not reconstruct a 16-byte secret")
    return secret.to_bytes(16, "big")


def encode_fixed_point(
    x: np.ndarray, scale_bits: int, n: int = 1, ring_bits: int = 64
) -> np.ndarray:
    """``round(x * 2^scale_bits)`` as uint32/uint64 (two's complement in Z_{2^ring_bits});
    checks that ``n`` such values sum without overflow."""
    xf = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(xf)):
        raise DataError("secure aggregation input contains NaN or inf")
    limit = 2.0 ** (ring_bits - 1 - scale_bits) / max(n, 1)
    peak = float(np.max(np.abs(xf))) if xf.size else 0.0
    if peak >= limit:
        raise DataError(
            f"secure aggregation input value {peak:.3g} overflows the {ring_bits}-bit ring "
            f"(limit {limit:.3g} for {n} devices at scale 2^{scale_bits}); lower scale_bits"
        )
    unsigned = RING_DTYPES[ring_bits]
    signed = np.int32 if ring_bits == 32 else np.int64
    return np.rint(xf * 2.0**scale_bits).astype(signed).view(unsigned)


def decode_fixed_point(ring: np.ndarray, scale_bits: int) -> np.ndarray:
    """Inverse of :func:`encode_fixed_point` for a (sum of) encoded vector(s); the ring
    is the array's dtype (uint32 or uint64)."""
    r = np.asarray(ring)
    v = r.view(np.int32) if r.dtype == np.uint32 else r.astype(np.uint64).view(np.int64)
    return v.astype(np.float64) / 2.0**scale_bits
