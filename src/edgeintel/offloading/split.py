"""Executing a split for real: head on the device, intermediate on the wire, tail on the server.

``split_model`` runs ONNX shape inference, then cuts the model with
``onnx.utils.Extractor`` into a head graph (model input -> crossing tensors)
and a tail graph (crossing tensors -> model outputs). ``SplitRunner`` runs
both with ONNX Runtime (one intra-op thread), serializing the crossing
tensors between them (optionally int8) exactly as a device would send them,
and times each part.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeintel.errors import ConfigError, ModelError
from edgeintel.offloading.graph import LayerGraph
from edgeintel.offloading.transfer import deserialize_tensors, serialize_tensors
from edgeintel.onnx_files import make_session

__all__ = [
    "SplitModel",
    "SplitResult",
    "SplitRunner",
    "mask_from_nodes",
    "split_diff",
    "split_model",
]


def mask_from_nodes(graph: LayerGraph, device_nodes: list[str]) -> np.ndarray:
    """Device mask running exactly ``device_nodes``; a ``ConfigError`` if that is not a cut."""
    mask = np.zeros(graph.num_nodes, dtype=bool)
    for name in device_nodes:
        mask[graph.index(name)] = True
    for t in graph.tensors:
        if t.producer >= 0 and not mask[t.producer]:
            for c in t.consumers:
                if mask[c]:
                    raise ConfigError(
                        f"the graph cannot be cut there: device node {graph.names[c]!r} needs "
                        f"tensor {t.name!r} from server node {graph.names[t.producer]!r}"
                    )
    return mask


@dataclass(frozen=True)
class SplitModel:
    """Head and tail ONNX files of one cut (``None`` when that side is empty)."""

    head_path: str | None
    tail_path: str | None
    crossing: tuple[str, ...]
    input_name: str
    output_names: tuple[str, ...]
    device_nodes: int


_EXTRACTORS: dict[str, Any] = {}


def _extractor(path: str) -> Any:
    """An ``onnx.utils.Extractor`` over the shape-inferred model (the last one is kept)."""
    import onnx

    key = f"{path}:{Path(path).stat().st_mtime_ns}"
    if key not in _EXTRACTORS:
        _EXTRACTORS.clear()
        _EXTRACTORS[key] = onnx.utils.Extractor(onnx.shape_inference.infer_shapes(onnx.load(path)))
    return _EXTRACTORS[key]


def split_model(
    model_path: str | Path, graph: LayerGraph, mask: np.ndarray, out_dir: str | Path
) -> SplitModel:
    """Write ``head.onnx`` / ``tail.onnx`` of the cut ``mask`` (True = device) into ``out_dir``."""
    import onnx

    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (graph.num_nodes,):
        raise ConfigError(f"a split mask needs {graph.num_nodes} entries, got {mask.shape}")
    if not graph.is_valid_cut(mask):
        bad = next(
            (graph.names[c], t.name)
            for t in graph.tensors
            for c in t.consumers
            if t.producer >= 0 and not mask[t.producer] and mask[c]
        )
        raise ConfigError(
            f"the graph cannot be cut there: device node {bad[0]!r} needs tensor {bad[1]!r} "
            "from the server"
        )
    model_path = str(model_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    crossing = tuple(t.name for t in graph.crossing(mask))
    outputs = graph.output_names
    if mask.all():
        return SplitModel(model_path, None, (), graph.input_name, outputs, graph.num_nodes)
    if not mask.any():
        return SplitModel(None, model_path, (graph.input_name,), graph.input_name, outputs, 0)
    ex = _extractor(model_path)
    try:
        head = ex.extract_model([graph.input_name], list(crossing))
        tail = ex.extract_model(list(crossing), list(outputs))
    except Exception as exc:
        raise ModelError(f"{model_path}: extracting the split failed ({exc})") from None
    head_path, tail_path = out / "head.onnx", out / "tail.onnx"
    onnx.save(head, str(head_path))
    onnx.save(tail, str(tail_path))
    return SplitModel(
        str(head_path), str(tail_path), crossing, graph.input_name, outputs, int(mask.sum())
    )


@dataclass(frozen=True)
class SplitResult:
    """Outputs of one split run, the payload size (bytes) and each part's time (ms, here)."""

    outputs: list[np.ndarray]
    payload_bytes: int
    head_ms: float
    serialize_ms: float
    tail_ms: float


class SplitRunner:
    """ONNX Runtime sessions of a split's head and tail; ``run`` executes one request."""

    def __init__(self, split: SplitModel, int8: bool = False) -> None:
        self.split = split
        self.int8 = int8
        self._head = make_session(split.head_path) if split.head_path else None
        self._tail = make_session(split.tail_path) if split.tail_path else None

    def run(self, x: np.ndarray) -> SplitResult:
        """Head on ``x``, serialize the crossing tensors, deserialize, tail; outputs + timings."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        t0 = time.perf_counter()
        if self._head is not None:
            names = list(self.split.crossing) or list(self.split.output_names)
            values = self._head.run(names, {self.split.input_name: x})
            if self._tail is None:
                t1 = time.perf_counter()
                return SplitResult(list(values), 0, (t1 - t0) * 1e3, 0.0, 0.0)
            sent = dict(zip(names, values, strict=True))
        else:
            sent = {self.split.input_name: x}
        t1 = time.perf_counter()
        payload = serialize_tensors(sent, int8=self.int8)
        t2 = time.perf_counter()
        assert self._tail is not None
        received = deserialize_tensors(payload)
        outputs = self._tail.run(list(self.split.output_names), received)
        t3 = time.perf_counter()
        return SplitResult(
            list(outputs), len(payload), (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3
        )

    def time(self, x: np.ndarray, runs: int = 20, warmup: int = 3) -> SplitResult:
        """Median head / serialize / tail ms over ``runs`` requests (outputs of the last)."""
        for _ in range(warmup):
            self.run(x)
        res = [self.run(x) for _ in range(runs)]
        return SplitResult(
            res[-1].outputs,
            res[-1].payload_bytes,
            float(np.median([r.head_ms for r in res])),
            float(np.median([r.serialize_ms for r in res])),
            float(np.median([r.tail_ms for r in res])),
        )


def split_diff(runner: SplitRunner, model_path: str | Path, inputs: np.ndarray) -> float:
    """Max |split - unsplit| over every output of every input (``inputs``: batch axis first;
    each runs alone at batch 1, as a device sends it)."""
    full = make_session(str(model_path))
    worst = 0.0
    for x in np.asarray(inputs, dtype=np.float32):
        feed = {runner.split.input_name: x[None]}
        want = full.run(list(runner.split.output_names), feed)
        got = runner.run(x[None]).outputs
        for a, b in zip(got, want, strict=True):
            worst = max(worst, float(np.abs(np.asarray(a) - np.asarray(b)).max()))
    return worst
