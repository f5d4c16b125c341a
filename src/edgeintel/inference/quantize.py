"""Post-training int8 quantization through ONNX Runtime (static QDQ and dynamic).

Static quantization calibrates activation ranges on real samples (MinMax,
Entropy or Percentile) and stores weights per channel as int8 with uint8
activations (the recommended pair on x86 CPUs with VNNI). Dynamic quantization
stores int8 weights and quantizes activations at run time. Both run ORT's
``quant_pre_process`` (shape inference + graph optimization) first. Layers
left in float32 (an op the quantizer has no int8 kernel for) are reported by
node name; a quantizer failure raises a ModelError naming the problem.

On an x86 CPU without VNNI, ONNX Runtime's uint8 x int8 kernels multiply with AVX2 /
AVX-512 ``vpmaddubsw``, which adds each pair of products in saturating int16: full 8-bit
weights overflow it and the int8 model computes wrong values (a 4x4 Gemm was 21 % of its
range off). There weights are quantized to 7 bits (ORT's ``reduce_range``, the remedy
its documentation gives for that case) unless ``reduce_range`` says otherwise.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from edgeintel.errors import ConfigError, ModelError
from edgeintel.inference.base import (
    CompressContext,
    StageKind,
    check_reduce_range,
    check_samples,
    reduce_range_here,
    register_technique,
)
from edgeintel.inference.measure import load_onnx
from edgeintel.threads import ort_calibration_threads

__all__ = [
    "CalibrationName",
    "QuantizeDynamicConfig",
    "QuantizeStaticConfig",
    "float_layers",
    "log_inputs",
    "quantize_dynamic_onnx",
    "quantize_static_onnx",
]


class CalibrationName(StrEnum):
    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"


@dataclass(frozen=True)
class QuantizeStaticConfig:
    """Static int8: ``calibration`` over ``calib_samples`` real samples, per-channel weights."""

    calibration: CalibrationName = CalibrationName.MINMAX
    calib_samples: int = 256
    per_channel: bool = True
    percentile: float = 99.999
    symmetric_activations: bool = False
    float_log_inputs: bool = True  # keep what feeds a Log float (``log_inputs``)
    reduce_range: bool | None = None  # 7-bit weights; None: where int8 kernels saturate

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "calibration", CalibrationName(self.calibration))
        except ValueError:
            raise ConfigError(
                f"calibration must be one of {', '.join(c.value for c in CalibrationName)}, "
                f"got {self.calibration!r}"
            ) from None
        if self.calib_samples < 1:
            raise ConfigError(f"calib_samples must be >= 1, got {self.calib_samples}")
        if not 90.0 <= self.percentile <= 100.0:
            raise ConfigError(f"percentile must lie in [90, 100], got {self.percentile}")
        check_reduce_range(self.reduce_range)


@dataclass(frozen=True)
class QuantizeDynamicConfig:
    """Dynamic int8: int8 weights, activations quantized at run time (``op_types`` limits ops)."""

    per_channel: bool = False
    op_types: tuple[str, ...] | None = None
    reduce_range: bool | None = None  # 7-bit weights; None: where int8 kernels saturate

    def __post_init__(self) -> None:
        if self.op_types is not None:
            ops = tuple(self.op_types)
            if not ops or not all(isinstance(o, str) and o for o in ops):
                raise ConfigError(f"op_types must be a non-empty list of op names, got {ops!r}")
            object.__setattr__(self, "op_types", ops)
        check_reduce_range(self.reduce_range)


class _Reader:
    """CalibrationDataReader over real samples in equal batches (histogram calibrators stack)."""

    def __init__(self, input_name: str, x: np.ndarray, batch: int = 32) -> None:
        batch = min(batch, len(x))
        x = x[: len(x) - len(x) % batch]
        self._batches = [{input_name: x[i : i + batch]} for i in range(0, len(x), batch)]
        self._i = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._i >= len(self._batches):
            return None
        self._i += 1
        return self._batches[self._i - 1]

    def rewind(self) -> None:
        self._i = 0


def _input_shape(model: onnx.ModelProto) -> tuple[int, ...]:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return tuple(d.dim_value for d in dims[1:])


def _preprocess(src: Path, dst: Path) -> Path:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
    except Exception as exc:  # the quantizer works without it; keep the original graph
        logging.getLogger(__name__).info("quant_pre_process skipped: %s", exc)
        return src
    return dst


def log_inputs(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes that compute what a ``Log`` node takes (everything upstream of
    it): a log-domain front end (``kws_dscnn``'s log-mel) stays float32, since 8-bit
    energies lose the dynamic range the log exists to keep (int8 there cost 47 points of
    keyword-spotting accuracy)."""
    produced_by = {o: n for n in model.graph.node for o in n.output}
    out: set[str] = set()
    stack = [i for n in model.graph.node if n.op_type == "Log" for i in n.input]
    while stack:
        node = produced_by.get(stack.pop())
        if node is None or node.name in out:
            continue
        out.add(node.name)
        stack.extend(node.input)
    return sorted(out)


def float_layers(model: onnx.ModelProto) -> list[str]:
    """Nodes with float weight tensors (initializers of > 1 element) not fed by a DequantizeLinear.

    After quantization these are the layers the quantizer left in float32.
    """
    inits = {i.name: i for i in model.graph.initializer}
    produced_by = {o: n for n in model.graph.node for o in n.output}
    out = []
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"):
            continue
        for name in node.input:
            init = inits.get(name)
            src = produced_by.get(name)
            if src is not None and src.op_type == "Constant":
                continue
            if (
                init is not None
                and init.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
                and int(np.prod(init.dims)) > 1
            ):
                out.append(f"{node.name or node.output[0]} ({node.op_type})")
                break
    return out


def _float_before(model: onnx.ModelProto) -> set[str]:
    return set(float_layers(model))


def _report(before: onnx.ModelProto, after_path: Path, ops: tuple[str, ...] | None) -> list[str]:
    after = onnx.load(str(after_path))
    left = [x for x in float_layers(after) if x in _float_before(before)]
    if ops is not None:
        left = [x for x in left if x.rsplit("(", 1)[1].rstrip(")") in ops]
    return [f"{x}: left in float32 (the quantizer has no int8 kernel for it)" for x in left]


def _below_error(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR


def _silenced(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run the quantizer without its chatter, changing no logging level for good: a filter
    drops the records below ERROR it logs on the root logger, and the ``onnxruntime``
    loggers are raised to ERROR only while it runs."""
    root, ort_log = logging.getLogger(), logging.getLogger("onnxruntime")
    level = ort_log.level
    root.addFilter(_below_error)
    ort_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.redirect_stdout(io.StringIO()):
                return fn(*args, **kwargs)
    finally:
        root.removeFilter(_below_error)
        ort_log.setLevel(level)


def quantize_static_onnx(
    src: str | Path, dst: str | Path, calib_x: np.ndarray, config: QuantizeStaticConfig
) -> list[str]:
    """Quantize ``src`` to ``dst`` (QDQ int8) calibrated on ``calib_x``; returns warnings."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    src, dst = Path(src), Path(dst)
    model = load_onnx(src)
    x = check_samples(calib_x, _input_shape(model), "calibration data")[: config.calib_samples]
    pre = _preprocess(src, dst.with_name(dst.stem + "_pre.onnx"))
    method = {
        CalibrationName.MINMAX: CalibrationMethod.MinMax,
        CalibrationName.ENTROPY: CalibrationMethod.Entropy,
        CalibrationName.PERCENTILE: CalibrationMethod.Percentile,
    }[CalibrationName(config.calibration)]
    extra: dict[str, Any] = {"ActivationSymmetric": config.symmetric_activations}
    if config.calibration == CalibrationName.PERCENTILE:
        extra["CalibPercentile"] = config.percentile
    keep = log_inputs(load_onnx(pre)) if config.float_log_inputs else []
    try:
        # calibration follows the caller's torch thread limit (the pipeline's threads)
        with ort_calibration_threads(torch.get_num_threads()):
            _silenced(
                quantize_static,
                str(pre),
                str(dst),
                _Reader(model.graph.input[0].name, x),
                quant_format=QuantFormat.QDQ,
                per_channel=config.per_channel,
                reduce_range=reduce_range_here(config.reduce_range),
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=method,
                extra_options=extra,
                nodes_to_exclude=keep,
            )
    except Exception as exc:
        raise ModelError(f"quantize_static failed on {src.name}: {_first_line(exc)}") from None
    finally:
        if pre != src:
            pre.unlink(missing_ok=True)
    kept = {f"{n} (" for n in keep}
    return [
        w.replace("(the quantizer has no int8 kernel for it)", "(it feeds a Log: kept float)")
        if any(w.startswith(k) for k in kept)
        else w
        for w in _report(model, dst, None)
    ]


def quantize_dynamic_onnx(
    src: str | Path, dst: str | Path, config: QuantizeDynamicConfig
) -> list[str]:
    """Quantize ``src`` to ``dst`` with int8 weights and run-time activation quantization."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = Path(src), Path(dst)
    model = load_onnx(src)
    pre = _preprocess(src, dst.with_name(dst.stem + "_pre.onnx"))
    try:
        _silenced(
            quantize_dynamic,
            str(pre),
            str(dst),
            op_types_to_quantize=list(config.op_types) if config.op_types else None,
            per_channel=config.per_channel,
            reduce_range=reduce_range_here(config.reduce_range),
            weight_type=QuantType.QInt8,
        )
    except Exception as exc:
        raise ModelError(f"quantize_dynamic failed on {src.name}: {_first_line(exc)}") from None
    finally:
        if pre != src:
            pre.unlink(missing_ok=True)
    return _report(model, dst, config.op_types)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else exc.__class__.__name__)[:200]


@register_technique("quantize_static", QuantizeStaticConfig, StageKind.ONNX)
def _quantize_static(
    src: Path, config: QuantizeStaticConfig, ctx: CompressContext, dst: Path
) -> list[str]:
    """Post-training static int8 (QDQ, per-channel) calibrated on real samples."""
    return quantize_static_onnx(src, dst, ctx.calib_x, config)


@register_technique("quantize_dynamic", QuantizeDynamicConfig, StageKind.ONNX)
def _quantize_dynamic(
    src: Path, config: QuantizeDynamicConfig, ctx: CompressContext, dst: Path
) -> list[str]:
    """Post-training dynamic int8 (weights int8, activations quantized at run time)."""
    return quantize_dynamic_onnx(src, dst, config)
