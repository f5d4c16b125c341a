"""Honest measurement of one model variant: size, parameters, MACs, the task kind's metric,
latency, memory.

Everything is measured on the exported ONNX graph as it would be deployed:
``onnx_bytes`` is the file size, ``compressed_bytes`` its zlib size (what a
sparse model saves in transit/storage), ``params`` the weight elements in the
graph (scales and zero points excluded), ``macs`` the multiply-accumulates of one
sample counted from Conv/Gemm/MatMul shapes, latency p50/p95 from ONNX Runtime at
batch 1 with one intra-op thread after warm-up (raw and scaled to a device), and
``peak_memory_bytes`` the weights plus the largest set of live intermediate
tensors while running one sample through ORT's optimized graph. The quality figure is the
task kind's headline metric on the held-out set (accuracy for a classifier, RMSE for
regression, AUROC for an anomaly detector; ``TaskKind.metric``), with all its metrics beside.
"""

from __future__ import annotations

import tempfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from edgeintel.errors import ConfigError, DataError, ModelError
from edgeintel.latency import LatencyStats, measure_latency, scale_latency, time_calls
from edgeintel.onnx_files import make_session, onnx_predict
from edgeintel.tasks import TaskKind, make_task

__all__ = [
    "MeasureConfig",
    "Measurement",
    "compressed_size",
    "count_macs",
    "count_onnx_params",
    "estimate_peak_memory",
    "load_onnx",
    "measure_onnx",
    "measure_torch_latency",
]

_QDQ = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}


@dataclass(frozen=True)
class MeasureConfig:
    """Latency protocol: ``runs`` timed batch-1 calls after ``warmup``; device speed factor."""

    runs: int = 100
    warmup: int = 10
    compute_speed: float = 1.0

    def __post_init__(self) -> None:
        if self.runs < 5:
            raise ConfigError(f"measure.runs must be >= 5, got {self.runs}")
        if self.warmup < 0:
            raise ConfigError(f"measure.warmup must be >= 0, got {self.warmup}")
        if not self.compute_speed > 0:
            raise ConfigError(f"measure.compute_speed must be > 0, got {self.compute_speed}")


@dataclass(frozen=True)
class Measurement:
    """One variant's figures; latency in ms (raw = this machine), sizes in bytes.

    ``metric_value`` is the task kind's headline metric ``metric`` on the held-out set
    (``higher_is_better`` says its direction; ``metrics`` holds every metric of the kind).
    """

    params: int
    onnx_bytes: int
    compressed_bytes: int
    macs: int
    metric_value: float
    latency: LatencyStats
    latency_scaled: LatencyStats
    compute_speed: float
    peak_memory_bytes: int
    metric: str = "accuracy"
    higher_is_better: bool = True
    metrics: dict[str, float] = field(default_factory=dict)
    samples: int = 0  # held-out samples the metric was measured on (0: unknown)

    @property
    def p50_ms(self) -> float:
        """Scaled p50 latency (ms) on the target device."""
        return self.latency_scaled.p50_ms

    @property
    def accuracy(self) -> float:
        """A classifier's held-out accuracy (the headline of the classification kind)."""
        if self.metric != "accuracy":
            raise AttributeError(f"this measurement's metric is {self.metric}, not accuracy")
        return self.metric_value

    @property
    def score(self) -> float:
        """The headline metric oriented so that higher is better (negated when lower is)."""
        return self.metric_value if self.higher_is_better else -self.metric_value

    def drop_from(self, reference: Measurement) -> float:
        """How much worse than ``reference`` this variant is, in the metric's unit (> 0:
        worse; e.g. 0.01 = one accuracy point lost, or RMSE 0.01 higher)."""
        return reference.score - self.score

    def to_json(self) -> dict[str, Any]:
        """The fields, the headline under its metric's name (``"accuracy": 0.97``)."""
        d = asdict(self)
        d[self.metric] = d.pop("metric_value")
        d["latency"] = self.latency.to_json()
        d["latency_scaled"] = self.latency_scaled.to_json()
        return d


def load_onnx(path: str | Path) -> onnx.ModelProto:
    """Load and check an ONNX file; a missing or corrupt file raises a one-line ModelError."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"model file not found: {p}")
    try:
        model = onnx.load(str(p))
        onnx.checker.check_model(model)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ModelError(f"{p}: not a valid ONNX model ({first[:160]})") from None
    if not model.graph.node:
        raise ModelError(f"{p}: not a valid ONNX model (the graph has no nodes)")
    return model


def compressed_size(path: str | Path) -> int:
    """Bytes of the file after zlib level 9 (zeros from unstructured pruning compress away)."""
    return len(zlib.compress(Path(path).read_bytes(), 9))


def count_onnx_params(model: onnx.ModelProto) -> int:
    """Weight elements stored in the graph, excluding quantization scales and zero points."""
    side: set[str] = set()
    for node in model.graph.node:
        if node.op_type in _QDQ or node.op_type.startswith("QLinear"):
            side.update(node.input[1:])
        elif node.op_type in ("ConvInteger", "MatMulInteger"):
            side.update(node.input[2:])
    return int(
        sum(
            int(np.prod(init.dims)) if init.dims else 1
            for init in model.graph.initializer
            if init.name not in side
        )
    )


def _dims(vi: Any) -> list[int]:
    """Static dims of a value_info; a symbolic dim (the batch axis) counts as 1."""
    return [d.dim_value if d.HasField("dim_value") else 1 for d in vi.type.tensor_type.shape.dim]


def count_macs(model: onnx.ModelProto) -> int:
    """Multiply-accumulates for one sample over Conv/ConvInteger/QLinearConv and Gemm/MatMul."""
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes: dict[str, list[int]] = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        shapes[vi.name] = _dims(vi)
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    total = 0
    for node in inferred.graph.node:
        op = node.op_type
        if op in ("Conv", "ConvInteger", "QLinearConv"):
            w = shapes.get(node.input[3] if op == "QLinearConv" else node.input[1])
            out = shapes.get(node.output[0])
            if w and out:
                total += int(np.prod(out[1:])) * int(np.prod(w[1:]))
        elif op in ("Gemm", "MatMul", "MatMulInteger", "QLinearMatMul"):
            a = shapes.get(node.input[0])
            out = shapes.get(node.output[0])
            if a and out:
                k = a[-1]
                if op == "Gemm":
                    trans_a = any(at.name == "transA" and at.i for at in node.attribute)
                    k = a[0] if trans_a else a[-1]
                total += int(np.prod(out)) * int(k)
    return total


def estimate_peak_memory(path: str | Path, sample: np.ndarray) -> int:
    """Weights plus the peak of live intermediate tensors (bytes) for one sample.

    The graph is the one ONNX Runtime runs (optimized at the extended level, so
    QDQ pairs are fused into int8 kernels and activations are 1 byte); tensor
    sizes are the real ones of running ``sample`` through it.
    """
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        opt_path = Path(tmp) / "opt.onnx"
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        opts.optimized_model_filepath = str(opt_path)
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            graph_model = onnx.load(str(opt_path))
        except Exception as exc:
            raise ModelError(f"{path}: ONNX Runtime cannot load the model ({exc})") from None
        weights = {i.name: numpy_helper.to_array(i).nbytes for i in graph_model.graph.initializer}
        g = graph_model.graph
        outputs = [o for n in g.node for o in n.output if o]
        known = {o.name for o in g.output}
        for name in outputs:
            if name not in known:
                g.output.append(onnx.ValueInfoProto(name=name))
        debug_path = Path(tmp) / "debug.onnx"
        onnx.save(graph_model, str(debug_path))
        sess = make_session(debug_path, optimize=False)
        names = [o.name for o in sess.get_outputs()]
        feed = {sess.get_inputs()[0].name: np.ascontiguousarray(sample, dtype=np.float32)}
        values = dict(zip(names, sess.run(None, feed), strict=True))
    size = {n: int(np.asarray(v).nbytes) for n, v in values.items()}
    size[g.input[0].name] = int(np.asarray(sample, dtype=np.float32).nbytes)
    last_use: dict[str, int] = {}
    for i, node in enumerate(g.node):
        for name in node.input:
            last_use[name] = i
    live = size[g.input[0].name]
    peak = live
    alive = {g.input[0].name}
    for i, node in enumerate(g.node):
        for name in node.output:
            if name in size and name not in alive:
                alive.add(name)
                live += size[name]
        peak = max(peak, live)
        for name in list(alive):
            if last_use.get(name, -1) <= i and name not in known:
                alive.discard(name)
                live -= size[name]
    return int(sum(weights.values()) + peak)


def measure_onnx(
    path: str | Path,
    eval_x: np.ndarray,
    eval_y: np.ndarray,
    config: MeasureConfig | None = None,
    task: TaskKind | None = None,
) -> Measurement:
    """Measure an ONNX file on held-out ``eval_x``/``eval_y`` with the latency protocol;
    quality by the metrics of ``task`` (``None``: classification, accuracy)."""
    cfg = config or MeasureConfig()
    kind = task if task is not None else make_task("classification")
    model = load_onnx(path)
    session = make_session(path)
    metrics = kind.evaluate(kind.predict(onnx_predict(session, eval_x), eval_x), eval_y)
    if kind.metric not in metrics:
        raise DataError(
            f"{path}: the held-out set gives no {kind.metric} for the {kind.name} task kind "
            f"({len(eval_y)} samples; an anomaly set needs both normal and anomalous ones)"
        )
    sample = np.ascontiguousarray(eval_x[:1], dtype=np.float32)
    lat = measure_latency(session, sample, runs=cfg.runs, warmup=cfg.warmup)
    return Measurement(
        params=count_onnx_params(model),
        onnx_bytes=Path(path).stat().st_size,
        compressed_bytes=compressed_size(path),
        macs=count_macs(model),
        metric_value=float(metrics[kind.metric]),
        latency=lat,
        latency_scaled=scale_latency(lat, cfg.compute_speed),
        compute_speed=cfg.compute_speed,
        peak_memory_bytes=estimate_peak_memory(path, sample),
        metric=kind.metric,
        higher_is_better=kind.higher_is_better,
        metrics={k: float(v) for k, v in metrics.items()},
        samples=len(eval_y),
    )


def measure_torch_latency(
    model: nn.Module, sample: np.ndarray, runs: int = 100, warmup: int = 10
) -> LatencyStats:
    """PyTorch eager fp32 latency (ms) at batch 1 with one intra-op thread, for comparison."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    was_training = model.training
    model.eval()
    x = torch.from_numpy(np.ascontiguousarray(sample, dtype=np.float32))
    try:
        with torch.inference_mode():
            return time_calls(lambda: model(x), runs, warmup)
    finally:
        torch.set_num_threads(threads)
        model.train(was_training)
