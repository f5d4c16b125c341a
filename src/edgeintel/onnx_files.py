"""ONNX files without torch: their sha256, an ONNX Runtime CPU session, batched prediction.

``edgeintel.models`` imports torch (seconds per process); a server, a device agent or a
component that only runs ONNX files needs only these, so every caller imports them from
here (``onnxruntime`` itself loads on the first ``make_session``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from edgeintel.errors import ModelError

__all__ = ["check_input_shape", "file_sha256", "make_session", "onnx_predict"]


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def make_session(path: str | Path, intra_op_threads: int = 1, optimize: bool = True) -> Any:
    """An ONNX Runtime CPU session with ``intra_op_threads`` threads (1 for honest latency);
    ``optimize=False`` turns graph optimisations off, so every node's output stays observable."""
    import onnxruntime as ort

    p = Path(path)
    if not p.is_file():
        raise ModelError(f"model file not found: {p}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        return ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelError(f"{p}: not a loadable ONNX model ({exc.__class__.__name__})") from None


def onnx_predict(session: Any, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Outputs (logits) of ``session`` for ``x`` (N, ...) in batches; float32 in and out."""
    name = session.get_inputs()[0].name
    outs = [
        session.run(None, {name: np.ascontiguousarray(x[i : i + batch_size], dtype=np.float32)})[0]
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(outs) if outs else np.empty((0,), dtype=np.float32)


def check_input_shape(session: Any, sample_shape: tuple[int, ...], source: str | Path) -> None:
    """Refuse a model whose first input cannot take a batch of ``sample_shape`` samples
    (a rank or a fixed size that differs from the data): one ``ModelError`` naming the
    file, the input and both shapes, before a device feeds it anything."""
    inp = session.get_inputs()[0]
    want = [d if isinstance(d, int) and d > 0 else None for d in inp.shape]
    have = (1, *sample_shape)
    shown = "[" + ", ".join("n" if d is None else str(d) for d in want) + "]"
    mismatch = len(want) != len(have) or any(
        w is not None and w != h for w, h in zip(want[1:], have[1:], strict=True)
    )
    if mismatch:
        raise ModelError(
            f"{source}: input {inp.name!r} takes shape {shown} (rank {len(want)}), but this "
            f"device's data are samples of shape {tuple(sample_shape)} (rank {len(have)} with "
            "the batch axis); give the model exported for this scenario's data"
        )
