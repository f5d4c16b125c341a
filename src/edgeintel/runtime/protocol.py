"""Open Inference Protocol v2 (KServe / Triton) tensors: JSON and the binary-data extension.

Pure functions between request/response bodies and numpy arrays; the server
and the clients share them. The binary extension puts the JSON header first
(its length in the ``Inference-Header-Content-Length`` HTTP header) and the raw
little-endian tensor bytes after it, in the order of the tensors that carry a
``binary_data_size`` parameter. ``BYTES`` elements are each a 4-byte
little-endian length followed by the bytes, in binary form; strings in JSON.

Every malformed input raises ``ProtocolError`` (answered 400 by the server).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeintel.errors import ProtocolError

__all__ = [
    "DATATYPES",
    "HEADER_LENGTH",
    "InferInput",
    "InferRequest",
    "ProtocolError",
    "decode_request",
    "decode_response",
    "deserialize_bytes",
    "encode_request",
    "encode_response",
    "from_datatype",
    "loads_strict",
    "read_shape",
    "serialize_bytes",
    "tensor_from_buffer",
    "tensor_from_values",
    "to_datatype",
]

HEADER_LENGTH = "inference-header-content-length"

#: The spec's tensor datatypes and their numpy dtypes (little-endian). BYTES is object (bytes).
DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
_BY_KIND_SIZE = {
    (dt.kind, dt.itemsize): name for name, dt in DATATYPES.items() if name not in ("BYTES",)
}


def _no_constant(name: str) -> Any:
    raise ProtocolError(f"{name} is not valid JSON (non-finite numbers are refused)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ProtocolError(f"number {text[:20]} is beyond the range of a 64-bit float")
    return value


_STRICT = json.JSONDecoder(parse_constant=_no_constant)  # built once: loads() builds one a call
_FINITE = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite_float)


def loads_strict(body: bytes | str, finite: bool = False) -> Any:
    """``json.loads`` that refuses ``NaN`` / ``Infinity`` literals (``ProtocolError``), as
    strict JSON does; also for malformed or too deeply nested bodies. ``finite``: also
    refuse numbers that overflow to infinity (``1e309``) wherever they are (tensors are
    checked after conversion to their datatype instead)."""
    try:
        if isinstance(body, bytes | bytearray | memoryview):
            raw = bytes(body)
            body = raw.decode(json.detect_encoding(raw), "surrogatepass")  # as json.loads
        return (_FINITE if finite else _STRICT).decode(body)
    except ProtocolError:
        raise
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError("request body is not valid JSON") from None
    except RecursionError:
        raise ProtocolError("request JSON is nested too deeply") from None


def to_datatype(dtype: Any) -> str:
    """The protocol datatype of a numpy dtype (``str``/``bytes``/object arrays are BYTES)."""
    dt = np.dtype(dtype)
    if dt.kind in "OSU":
        return "BYTES"
    name = _BY_KIND_SIZE.get((dt.kind, dt.itemsize))
    if name is None:
        raise ProtocolError(f"numpy dtype {dt} has no Open Inference Protocol datatype")
    return name


def from_datatype(datatype: Any) -> np.dtype[Any]:
    try:
        return DATATYPES[datatype]
    except (KeyError, TypeError):
        raise ProtocolError(
            f"unknown datatype {datatype!r}; expected one of: {', '.join(DATATYPES)}"
        ) from None


def serialize_bytes(arr: np.ndarray) -> bytes:
    """BYTES tensor -> length-prefixed elements in row-major order."""
    out = bytearray()
    for item in arr.reshape(-1):
        b = item.encode("utf-8") if isinstance(item, str) else bytes(item)
        out += len(b).to_bytes(4, "little") + b
    return bytes(out)


def deserialize_bytes(buf: bytes | memoryview, count: int, name: str = "tensor") -> np.ndarray:
    """Length-prefixed elements -> 1-D object array of ``count`` bytes objects."""
    mv = memoryview(buf)
    items: list[bytes] = []
    pos = 0
    while pos < len(mv):
        if pos + 4 > len(mv):
            raise ProtocolError(f"input {name!r}: truncated BYTES element length")
        n = int.from_bytes(mv[pos : pos + 4], "little")
        pos += 4
        if pos + n > len(mv):
            raise ProtocolError(f"input {name!r}: BYTES element longer than the data")
        items.append(bytes(mv[pos : pos + n]))
        pos += n
    if len(items) != count:
        raise ProtocolError(f"input {name!r}: {len(items)} BYTES elements for a shape of {count}")
    arr = np.empty(count, dtype=object)
    arr[:] = items
    return arr


@dataclass
class InferInput:
    """One decoded input tensor."""

    name: str
    datatype: str
    data: np.ndarray


@dataclass
class InferRequest:
    """A decoded infer request: inputs, requested outputs and whether to answer in binary."""

    id: str | None
    inputs: list[InferInput]
    outputs: list[str] | None = None
    binary_outputs: set[str] = field(default_factory=set)
    binary_all: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)


def _shape(raw: Any, name: str) -> tuple[int, ...]:
    if not isinstance(raw, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**31 for d in raw
    ):
        raise ProtocolError(f"input {name!r}: 'shape' must be a list of non-negative integers")
    if math.prod(raw) > 1 << 28:
        raise ProtocolError(f"input {name!r}: shape {raw} is too large")
    return tuple(raw)


def read_shape(raw: Any, name: str) -> tuple[int, ...]:
    """A tensor's shape: a list of non-negative integers of bounded product."""
    return _shape(raw, name)


def tensor_from_buffer(
    buf: bytes | memoryview, datatype: str, shape: tuple[int, ...], name: str
) -> np.ndarray:
    """A tensor from its raw little-endian bytes (BYTES: length-prefixed elements)."""
    count = math.prod(shape)
    if datatype == "BYTES":
        return deserialize_bytes(buf, count, name).reshape(shape)
    dt = from_datatype(datatype)
    if len(buf) != count * dt.itemsize:
        raise ProtocolError(
            f"input {name!r}: {len(buf)} bytes for shape {list(shape)} of {datatype} "
            f"(expected {count * dt.itemsize})"
        )
    return np.frombuffer(buf, dtype=dt).reshape(shape)


def tensor_from_values(
    values: list[Any], datatype: str, shape: tuple[int, ...], name: str
) -> np.ndarray:
    """A tensor from a flat list of values, type- and range-checked (JSON data, gRPC
    typed contents; BYTES values are ``str`` or ``bytes``)."""
    if datatype == "BYTES":
        if len(values) != math.prod(shape):
            raise ProtocolError(f"input {name!r}: {len(values)} values for shape {list(shape)}")
        arr = np.empty(len(values), dtype=object)
        arr[:] = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in values]
        return arr.reshape(shape)
    return _json_tensor(values, datatype, shape, name)


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    if all(not isinstance(d, list) for d in data):
        return data
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _json_tensor(data: Any, datatype: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    flat = _flatten(data)
    count = math.prod(shape)
    if len(flat) != count:
        raise ProtocolError(f"input {name!r}: {len(flat)} values for shape {list(shape)}")
    if datatype == "BYTES":
        if not all(isinstance(v, str) for v in flat):
            raise ProtocolError(f"input {name!r}: BYTES data must be strings")
        arr = np.empty(count, dtype=object)
        arr[:] = [v.encode("utf-8") for v in flat]
        return arr.reshape(shape)
    dt = DATATYPES[datatype]
    if datatype == "BOOL":
        if not all(isinstance(v, bool) for v in flat):
            raise ProtocolError(f"input {name!r}: BOOL data must be true/false")
    elif dt.kind in "iu":
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in flat):
            raise ProtocolError(f"input {name!r}: {datatype} data must be integers")
        info = np.iinfo(dt)
        if flat and (min(flat) < info.min or max(flat) > info.max):
            raise ProtocolError(f"input {name!r}: a value is out of range for {datatype}")
    elif not all(isinstance(v, int | float) and not isinstance(v, bool) for v in flat):
        raise ProtocolError(f"input {name!r}: {datatype} data must be numbers")
    try:
        with np.errstate(over="ignore"):  # an overflow is inf, refused by the server's check
            return np.asarray(flat, dtype=dt).reshape(shape)
    except (ValueError, OverflowError, TypeError) as exc:
        raise ProtocolError(f"input {name!r}: cannot read data as {datatype} ({exc})") from None


def decode_request(body: bytes, header_length: int | None = None) -> InferRequest:
    """Parse an infer request body (JSON, or JSON header + binary tensors)."""
    if header_length is None:
        header_length = len(body)
    if header_length < 0 or header_length > len(body):
        raise ProtocolError(
            f"Inference-Header-Content-Length {header_length} exceeds the body ({len(body)} bytes)"
        )
    head = loads_strict(body[:header_length])
    if not isinstance(head, dict):
        raise ProtocolError("request body must be a JSON object")
    raw_inputs = head.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise ProtocolError("'inputs' must be a non-empty list")
    binary = memoryview(body)[header_length:]
    pos = 0
    inputs: list[InferInput] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_inputs):
        if not isinstance(raw, dict):
            raise ProtocolError(f"inputs[{i}] must be an object")
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise ProtocolError(f"inputs[{i}].name must be a non-empty string")
        if name in seen:
            raise ProtocolError(f"input {name!r} given twice")
        seen.add(name)
        datatype = raw.get("datatype")
        if not isinstance(datatype, str):
            raise ProtocolError(f"input {name!r}: 'datatype' must be a string")
        from_datatype(datatype)  # ProtocolError for an unknown one
        shape = _shape(raw.get("shape"), name)
        params = raw.get("parameters") or {}
        if not isinstance(params, dict):
            raise ProtocolError(f"input {name!r}: 'parameters' must be an object")
        size = params.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise ProtocolError(f"input {name!r}: binary_data_size must be an integer >= 0")
            if pos + size > len(binary):
                raise ProtocolError(
                    f"input {name!r}: binary_data_size {size} exceeds the binary data "
                    f"({len(binary) - pos} bytes left)"
                )
            arr = tensor_from_buffer(binary[pos : pos + size], datatype, shape, name)
            pos += size
        else:
            if "data" not in raw:
                raise ProtocolError(f"input {name!r}: needs 'data' or a binary_data_size")
            arr = _json_tensor(raw["data"], datatype, shape, name)
        inputs.append(InferInput(name=name, datatype=datatype, data=arr))
    if pos != len(binary):
        raise ProtocolError(f"{len(binary) - pos} bytes of binary data not claimed by any input")
    params = head.get("parameters") or {}
    if not isinstance(params, dict):
        raise ProtocolError("'parameters' must be an object")
    outputs: list[str] | None = None
    binary_outputs: set[str] = set()
    raw_outputs = head.get("outputs")
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise ProtocolError("'outputs' must be a list")
        outputs = []
        for j, o in enumerate(raw_outputs):
            if not isinstance(o, dict) or not isinstance(o.get("name"), str):
                raise ProtocolError(f"outputs[{j}] must be an object with a 'name'")
            outputs.append(o["name"])
            op = o.get("parameters") or {}
            if isinstance(op, dict) and op.get("binary_data") is True:
                binary_outputs.add(o["name"])
    rid = head.get("id")
    return InferRequest(
        id=rid if isinstance(rid, str) else None,
        inputs=inputs,
        outputs=outputs,
        binary_outputs=binary_outputs,
        binary_all=params.get("binary_data_output") is True,
        parameters=params,
    )


def _json_data(arr: np.ndarray, name: str = "tensor") -> list[Any]:
    flat = arr.reshape(-1)
    if flat.dtype.kind == "f" and not np.isfinite(flat).all():
        raise ProtocolError(
            f"tensor {name!r} holds non-finite values (NaN/Infinity), which JSON cannot carry; "
            "ask for it with binary_data"
        )
    if flat.dtype.kind in "OSU":
        return [
            (v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else str(v))
            for v in flat
        ]
    return flat.tolist()  # type: ignore[no-any-return]


def encode_response(
    model: str,
    version: str,
    outputs: dict[str, np.ndarray],
    binary: set[str] | None = None,
    request_id: str | None = None,
) -> tuple[bytes, int | None]:
    """Response body and, when any output is binary, the JSON header length."""
    binary = binary or set()
    head: dict[str, Any] = {"model_name": model, "model_version": version}
    if request_id is not None:
        head["id"] = request_id
    tensors: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, arr in outputs.items():
        t: dict[str, Any] = {
            "name": name,
            "datatype": to_datatype(arr.dtype),
            "shape": list(arr.shape),
        }
        if name in binary:
            raw = (
                serialize_bytes(arr)
                if t["datatype"] == "BYTES"
                else np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
            )
            t["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            t["data"] = _json_data(arr, name)
        tensors.append(t)
    head["outputs"] = tensors
    header = json.dumps(head, separators=(",", ":"), allow_nan=False).encode()
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)


def encode_request(
    inputs: dict[str, np.ndarray],
    binary: bool = True,
    outputs: list[str] | None = None,
    binary_outputs: bool = True,
    request_id: str | None = None,
) -> tuple[bytes, int | None]:
    """A client's request body and the JSON header length (None when all JSON)."""
    tensors: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, arr in inputs.items():
        dt = to_datatype(arr.dtype)
        t: dict[str, Any] = {"name": name, "datatype": dt, "shape": list(arr.shape)}
        if binary:
            raw = (
                serialize_bytes(arr)
                if dt == "BYTES"
                else np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
            )
            t["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            t["data"] = _json_data(arr, name)
        tensors.append(t)
    head: dict[str, Any] = {"inputs": tensors}
    if request_id is not None:
        head["id"] = request_id
    if outputs is not None:
        head["outputs"] = [
            {"name": o, "parameters": {"binary_data": binary_outputs}} for o in outputs
        ]
    elif binary_outputs:
        head["parameters"] = {"binary_data_output": True}
    header = json.dumps(head, separators=(",", ":")).encode()
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)


def decode_response(body: bytes, header_length: int | None = None) -> dict[str, np.ndarray]:
    """Output tensors of an infer response (JSON or binary)."""
    n = len(body) if header_length is None else header_length
    head = json.loads(body[:n])
    if "error" in head:
        raise ProtocolError(str(head["error"]))
    pos = n
    out: dict[str, np.ndarray] = {}
    for t in head["outputs"]:
        shape = tuple(t["shape"])
        dt = from_datatype(t["datatype"])
        size = (t.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            chunk = body[pos : pos + size]
            pos += size
            if t["datatype"] == "BYTES":
                out[t["name"]] = deserialize_bytes(chunk, math.prod(shape)).reshape(shape)
            else:
                out[t["name"]] = np.frombuffer(chunk, dtype=dt).reshape(shape)
        else:
            out[t["name"]] = _json_tensor(t["data"], t["datatype"], shape, t["name"])
    return out
