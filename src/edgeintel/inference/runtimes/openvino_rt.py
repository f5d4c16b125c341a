"""OpenVINO: the ONNX file converted to OpenVINO IR (``.xml`` + ``.bin``); int8 by NNCF.

Compiled for the CPU plugin with one inference thread, one stream and an f32 precision
hint (the plugin would otherwise run bf16 on CPUs that have it, which is not fp32 parity).
The IR keeps the ONNX tensor names, so ``probe`` exposes intermediate tensors by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeintel.errors import ConfigError, ModelError
from edgeintel.extras import require
from edgeintel.inference.runtimes import RUNTIMES
from edgeintel.inference.runtimes.base import ExportSource, Predictor, Probe, Runtime

__all__ = ["OPENVINO", "cpu_config"]

CALIB_SAMPLES = 256


def cpu_config() -> dict[str, Any]:
    """CPU plugin settings for honest batch-1 latency: 1 thread, 1 stream, f32, latency mode."""
    return {
        "INFERENCE_NUM_THREADS": 1,
        "NUM_STREAMS": 1,
        "INFERENCE_PRECISION_HINT": "f32",
        "PERFORMANCE_HINT": "LATENCY",
    }


def _ov() -> Any:
    return require("openvino", "the OpenVINO runtime")


def _export(source: ExportSource, out_dir: Path, precision: str, calib: np.ndarray | None) -> Path:
    ov = _ov()
    out_dir.mkdir(parents=True, exist_ok=True)
    dst = out_dir / f"model_{precision}.xml"
    try:
        model = ov.convert_model(str(source.onnx_path))
    except Exception as exc:
        raise ModelError(f"{source.onnx_path}: OpenVINO cannot convert it ({exc})") from None
    if precision == "int8":
        if calib is None:
            raise ConfigError("openvino int8 needs calibration samples (real data)")
        nncf = require("nncf", "OpenVINO int8 (NNCF)")
        samples = np.ascontiguousarray(calib[:CALIB_SAMPLES], dtype=np.float32)
        dataset = nncf.Dataset([samples[i : i + 1] for i in range(len(samples))])
        # full bias correction: NNCF's default fast one cut the MNIST CNN's top-1 agreement
        # to 0.858 (diverging at the global average pool); the full one keeps 0.99
        # (benchmarks/bench_runtimes.py, docs/runtimes.md)
        model = nncf.quantize(model, dataset, subset_size=len(samples), fast_bias_correction=False)
    ov.save_model(model, str(dst), compress_to_fp16=False)
    return dst


class _Compiled:
    """An OpenVINO compiled model (CPU) as a ``Predictor``."""

    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled
        self.request = compiled.create_infer_request()

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.request.infer({0: batch})
        return np.array(self.request.get_output_tensor(0).data)


def _read(path: Path) -> Any:
    ov = _ov()
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    try:
        return ov.Core().read_model(str(path))
    except Exception as exc:
        raise ModelError(f"{path}: not a loadable OpenVINO IR ({exc.__class__.__name__})") from None


def _load(path: Path) -> Predictor:
    model = _read(path)
    return _Compiled(_ov().Core().compile_model(model, "CPU", cpu_config()))


def _probe(path: Path, names: list[str]) -> Probe:
    """Compile the IR with every tensor among ``names`` it still has added as an output."""
    ov = _ov()
    model = _read(path)
    by_name: dict[str, Any] = {}
    for op in model.get_ordered_ops():
        for out in op.outputs():
            for n in out.get_names():
                by_name.setdefault(n, out)
    wanted = [n for n in names if n in by_name]
    model.add_outputs([by_name[n] for n in wanted])
    compiled = ov.Core().compile_model(model, "CPU", cpu_config())
    index: dict[str, int] = {}
    for i, out in enumerate(compiled.outputs):
        for n in out.get_names():
            index.setdefault(n, i)

    def run(batch: np.ndarray) -> dict[str, np.ndarray]:
        result = compiled(np.ascontiguousarray(batch, dtype=np.float32))
        return {n: np.asarray(result[index[n]]) for n in wanted if n in index}

    return run


OPENVINO = Runtime(
    name="openvino",
    suffix=".xml",
    imports=("openvino",),
    export=_export,
    load=_load,
    probe=_probe,
    sidecars=(".bin",),
    notes="ONNX -> IR by openvino.convert_model (fp32 weights kept); int8: NNCF post-training "
    "quantization (full bias correction) on real calibration samples",
)
RUNTIMES.add("openvino", OPENVINO)
