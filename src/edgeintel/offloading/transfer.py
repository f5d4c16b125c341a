"""Serialization of the intermediate tensors a split sends from device to server.

Payload layout: a 4-byte little-endian header length, a JSON header (per
tensor: name, dtype, shape, and for int8 the affine scale and zero point),
then the raw buffers in header order. ``int8=True`` quantizes each float32
tensor to uint8 with its own min/max range (4x fewer bytes; the error is at
most half a quantization step, ``scale / 2``). The byte count that the cost
model charges is ``len(payload)``.
"""

from __future__ import annotations

import json
import struct

import numpy as np

from edgeintel.errors import DataError

__all__ = ["deserialize_tensors", "int8_payload_bytes", "serialize_tensors"]


def serialize_tensors(tensors: dict[str, np.ndarray], int8: bool = False) -> bytes:
    """Pack named arrays into one payload (optionally int8-quantized floats)."""
    header = []
    buffers = []
    for name, arr in tensors.items():
        a = np.ascontiguousarray(arr)
        entry: dict[str, object] = {"name": name, "shape": list(a.shape)}
        if int8 and a.dtype == np.float32 and a.size:
            lo, hi = float(a.min()), float(a.max())
            scale = (hi - lo) / 255.0 if hi > lo else 1.0
            q = np.clip(np.rint((a - lo) / scale), 0, 255).astype(np.uint8)
            entry.update(dtype="uint8q", scale=scale, zero=lo)
            buffers.append(q.tobytes())
        else:
            entry["dtype"] = a.dtype.str
            buffers.append(a.tobytes())
        entry["nbytes"] = len(buffers[-1])
        header.append(entry)
    head = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<I", len(head)) + head + b"".join(buffers)


def deserialize_tensors(payload: bytes) -> dict[str, np.ndarray]:
    """Unpack a payload of ``serialize_tensors`` (dequantizing int8 tensors to float32)."""
    try:
        (n,) = struct.unpack_from("<I", payload, 0)
        header = json.loads(payload[4 : 4 + n])
    except (struct.error, ValueError) as exc:
        raise DataError(f"not an intermediate-tensor payload ({exc})") from None
    out: dict[str, np.ndarray] = {}
    pos = 4 + n
    for e in header:
        raw = payload[pos : pos + e["nbytes"]]
        pos += e["nbytes"]
        if e["dtype"] == "uint8q":
            q = np.frombuffer(raw, dtype=np.uint8).reshape(e["shape"])
            out[e["name"]] = (q.astype(np.float32) * np.float32(e["scale"])) + np.float32(e["zero"])
        else:
            out[e["name"]] = np.frombuffer(raw, dtype=np.dtype(e["dtype"])).reshape(e["shape"])
    return out


def int8_payload_bytes(float_bytes: int) -> int:
    """Bytes of a float32 tensor of ``float_bytes`` once int8-quantized (header excluded)."""
    return int(np.ceil(float_bytes / 4))
