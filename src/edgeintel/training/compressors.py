"""Update compressors: what a device actually puts on the wire, byte for byte.

A compressor turns a flat float32 update (the concatenation of a model's
``get_weights`` arrays, length ``d``) into ``bytes`` and back. The wire format
is the raw concatenation of numpy ``.tobytes()`` buffers listed per
compressor below, with no framing: both ends know ``d`` (the model
architecture) and the compressor's config, so every byte counted is a byte a
real device would send.

- ``none``: float32 values, ``4 d`` bytes.
- ``topk``: the ``k = ceil(ratio * d)`` largest-magnitude entries: indices
  (ascending; uint16 when ``d <= 65536``, else uint32) then float32 values.
- ``int8``: per block of ``block_size`` values, float32 minimum and float32
  step, then one uint8 code per value (round to nearest); ``d + 8 * blocks``.
- ``sign``: one bit per value (``np.packbits`` of ``v >= 0``, big-endian bit
  order) then one float32 scale per block, the block's mean ``|v|``
  (scaled sign, Bernstein et al. 2018 / Karimireddy et al. 2019).

Error feedback (Seide et al. 2014; Stich et al. 2018): the device adds its
residual to the update before compressing, and keeps what compression dropped
as the next residual (``compress_with_feedback``). It is on by default for the
biased compressors ``topk`` and ``sign``.

Momentum correction (Deep Gradient Compression, Lin et al. 2018, eqs. 4-5 and
"momentum factor masking"): with ``momentum`` m > 0 (top-k only) a device keeps a
velocity ``u <- m u + update`` and accumulates ``v <- v + u``; it sends top-k of ``v``
and clears both ``u`` and ``v`` where it sent (``compress_with_momentum``), so the
momentum of a coordinate restarts once it has been delivered.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from edgeintel.errors import ConfigError, DataError
from edgeintel.registry import Registry

__all__ = [
    "UPDATE_COMPRESSORS",
    "Compressor",
    "CompressorConfig",
    "CompressorKind",
    "Int8Quantizer",
    "NoCompression",
    "SignCompressor",
    "TopK",
    "compress_with_feedback",
    "compress_with_momentum",
    "make_compressor",
]


class CompressorKind(StrEnum):
    NONE = "none"
    TOPK = "topk"
    INT8 = "int8"
    SIGN = "sign"


@dataclass(frozen=True)
class CompressorConfig:
    """``ratio``: fraction of entries top-k keeps; ``block_size``: values per scale (int8, sign);
    ``error_feedback``: ``None`` picks the default (on for topk and sign); ``momentum``:
    DGC momentum correction factor in [0, 1) (top-k with error feedback only)."""

    name: str = CompressorKind.NONE
    ratio: float = 0.01
    block_size: int = 1024
    error_feedback: bool | None = None
    momentum: float = 0.0

    def __post_init__(self) -> None:
        UPDATE_COMPRESSORS.get(str(self.name))
        if not 0 < self.ratio <= 1:
            raise ConfigError(f"compressor ratio must lie in (0, 1], got {self.ratio}")
        if self.block_size < 1:
            raise ConfigError(f"compressor block_size must be >= 1, got {self.block_size}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"compressor momentum must lie in [0, 1), got {self.momentum}")
        if self.momentum > 0 and (str(self.name) != CompressorKind.TOPK or not self.uses_feedback):
            raise ConfigError(
                "compressor momentum (DGC momentum correction) needs name 'topk' with "
                "error feedback"
            )

    @property
    def uses_feedback(self) -> bool:
        if self.error_feedback is not None:
            return self.error_feedback
        return str(self.name) in (CompressorKind.TOPK, CompressorKind.SIGN)


class Compressor:
    """Base class: ``encode`` a flat float32 vector to bytes, ``decode`` it back."""

    def encode(self, vec: np.ndarray) -> bytes:
        raise NotImplementedError

    def decode(self, blob: bytes, size: int) -> np.ndarray:
        raise NotImplementedError

    def roundtrip(self, vec: np.ndarray) -> tuple[bytes, np.ndarray]:
        """(wire bytes, what the receiver reconstructs)."""
        blob = self.encode(vec)
        return blob, self.decode(blob, vec.size)


def _as_vec(vec: np.ndarray) -> np.ndarray:
    v = np.asarray(vec, dtype=np.float32)
    if v.ndim != 1:
        raise DataError(f"compressors take a flat vector, got shape {v.shape}")
    return v


def _expect(blob: bytes, n: int, what: str) -> None:
    if len(blob) != n:
        raise DataError(f"{what} payload has {len(blob)} bytes, expected {n}")


class NoCompression(Compressor):
    def encode(self, vec: np.ndarray) -> bytes:
        return _as_vec(vec).tobytes()

    def decode(self, blob: bytes, size: int) -> np.ndarray:
        _expect(blob, 4 * size, "dense")
        return np.frombuffer(blob, dtype=np.float32).copy()


class TopK(Compressor):
    def __init__(self, ratio: float) -> None:
        self.ratio = ratio

    def k(self, size: int) -> int:
        return max(1, min(size, math.ceil(self.ratio * size - 1e-9)))

    @staticmethod
    def index_dtype(size: int) -> type[np.unsignedinteger]:
        return np.uint16 if size <= 1 << 16 else np.uint32

    def encode(self, vec: np.ndarray) -> bytes:
        v = _as_vec(vec)
        k = self.k(v.size)
        # introselect: O(d) and deterministic for a given input
        idx = np.sort(np.argpartition(np.abs(v), v.size - k)[v.size - k :])
        return idx.astype(self.index_dtype(v.size)).tobytes() + v[idx].tobytes()

    def decode(self, blob: bytes, size: int) -> np.ndarray:
        k, dt = self.k(size), self.index_dtype(size)
        isz = np.dtype(dt).itemsize
        _expect(blob, k * (isz + 4), "topk")
        idx = np.frombuffer(blob[: k * isz], dtype=dt).astype(np.int64)
        out = np.zeros(size, dtype=np.float32)
        out[idx] = np.frombuffer(blob[k * isz :], dtype=np.float32)
        return out


class Int8Quantizer(Compressor):
    def __init__(self, block_size: int) -> None:
        self.block = block_size

    def encode(self, vec: np.ndarray) -> bytes:
        v = _as_vec(vec)
        nb = math.ceil(v.size / self.block)
        pad = np.zeros(nb * self.block, dtype=np.float32)
        pad[: v.size] = v
        blocks = pad.reshape(nb, self.block)
        lo = blocks.min(1)
        hi = blocks.max(1)
        if v.size % self.block:  # the padding must not widen the last block's range
            tail = v[(nb - 1) * self.block :]
            lo[-1], hi[-1] = tail.min(), tail.max()
        step = ((hi - lo) / 255.0).astype(np.float32)
        safe = np.where(step > 0, step, 1.0).astype(np.float32)
        q = np.clip(np.rint((blocks - lo[:, None]) / safe[:, None]), 0, 255).astype(np.uint8)
        return lo.astype(np.float32).tobytes() + step.tobytes() + q.ravel()[: v.size].tobytes()

    def decode(self, blob: bytes, size: int) -> np.ndarray:
        nb = math.ceil(size / self.block)
        _expect(blob, 8 * nb + size, "int8")
        lo = np.frombuffer(blob[: 4 * nb], dtype=np.float32)
        step = np.frombuffer(blob[4 * nb : 8 * nb], dtype=np.float32)
        q = np.frombuffer(blob[8 * nb :], dtype=np.uint8).astype(np.float32)
        blk = np.arange(size) // self.block
        return (lo[blk] + q * step[blk]).astype(np.float32)


class SignCompressor(Compressor):
    def __init__(self, block_size: int) -> None:
        self.block = block_size

    def encode(self, vec: np.ndarray) -> bytes:
        v = _as_vec(vec)
        nb = math.ceil(v.size / self.block)
        blk = np.arange(v.size) // self.block
        scale = np.bincount(blk, weights=np.abs(v), minlength=nb) / np.bincount(blk, minlength=nb)
        return np.packbits(v >= 0).tobytes() + scale.astype(np.float32).tobytes()

    def decode(self, blob: bytes, size: int) -> np.ndarray:
        nb = math.ceil(size / self.block)
        nbits = math.ceil(size / 8)
        _expect(blob, nbits + 4 * nb, "sign")
        bits = np.unpackbits(np.frombuffer(blob[:nbits], dtype=np.uint8), count=size)
        scale = np.frombuffer(blob[nbits:], dtype=np.float32)
        blk = np.arange(size) // self.block
        return np.where(bits == 1, scale[blk], -scale[blk]).astype(np.float32)


CompressorFactory = Callable[[CompressorConfig], Compressor]
UPDATE_COMPRESSORS: Registry[CompressorFactory] = Registry("update compressor")
UPDATE_COMPRESSORS.add(CompressorKind.NONE, lambda cfg: NoCompression())
UPDATE_COMPRESSORS.add(CompressorKind.TOPK, lambda cfg: TopK(cfg.ratio))
UPDATE_COMPRESSORS.add(CompressorKind.INT8, lambda cfg: Int8Quantizer(cfg.block_size))
UPDATE_COMPRESSORS.add(CompressorKind.SIGN, lambda cfg: SignCompressor(cfg.block_size))


def make_compressor(config: CompressorConfig) -> Compressor:
    return UPDATE_COMPRESSORS.get(str(config.name))(config)


def compress_with_feedback(
    compressor: Compressor, update: np.ndarray, residual: np.ndarray | None
) -> tuple[bytes, np.ndarray, np.ndarray]:
    """Compress ``update + residual``; return (wire bytes, decoded vector, new residual).

    The new residual is exactly ``update + residual - decoded``: what compression dropped.
    """
    corrected = _as_vec(update) if residual is None else _as_vec(update) + residual
    blob, sent = compressor.roundtrip(corrected)
    return blob, sent, (corrected - sent).astype(np.float32)


def compress_with_momentum(
    compressor: Compressor,
    update: np.ndarray,
    residual: np.ndarray | None,
    velocity: np.ndarray | None,
    momentum: float,
) -> tuple[bytes, np.ndarray, np.ndarray, np.ndarray]:
    """DGC momentum correction: ``u = m u + update``, ``v = v + u``, send ``compress(v)``;
    return (wire bytes, decoded vector, new residual ``v - sent``, new velocity ``u`` with
    the sent coordinates zeroed: momentum factor masking)."""
    u = _as_vec(update) if velocity is None else momentum * velocity + _as_vec(update)
    v = u if residual is None else residual + u
    blob, sent = compressor.roundtrip(v)
    new_u = np.where(sent != 0, np.float32(0), u).astype(np.float32)
    return blob, sent, (v - sent).astype(np.float32), new_u
