"""ExecuTorch: the PyTorch model exported (``torch.export``) and lowered to XNNPACK as ``.pte``.

int8 is PT2E with the XNNPACK quantizer (symmetric, per-channel weights) calibrated on real
samples. The program is exported at batch 1 (what a device runs); ``run`` loops over a batch.
ExecuTorch exports from the PyTorch model, not from ONNX, so an ONNX-only source is refused,
and it has no ``probe`` (the lowered XNNPACK blob hides its intermediate tensors).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edgeintel.errors import ConfigError, ModelError
from edgeintel.extras import require
from edgeintel.inference.runtimes import RUNTIMES
from edgeintel.inference.runtimes.base import ExportSource, Predictor, Runtime

__all__ = ["EXECUTORCH"]

CALIB_SAMPLES = 256
_ONE_THREAD: list[bool] = []  # the process's ExecuTorch threadpool is at one thread


def _quantize(model: Any, example: Any, calib: np.ndarray) -> Any:
    import torch

    quantizer_mod = require(
        "executorch.backends.xnnpack.quantizer.xnnpack_quantizer", "ExecuTorch int8"
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = quantizer_mod.XNNPACKQuantizer()
    quantizer.set_global(quantizer_mod.get_symmetric_quantization_config(is_per_channel=True))
    graph = torch.export.export(model, (example,)).module()
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for s in np.ascontiguousarray(calib[:CALIB_SAMPLES], dtype=np.float32):
            prepared(torch.from_numpy(s[None]))
    return convert_pt2e(prepared)


def _export(source: ExportSource, out_dir: Path, precision: str, calib: np.ndarray | None) -> Path:
    if source.model is None:
        raise ConfigError(
            "executorch exports from the PyTorch model; give a trained model (a run's "
            "model.pt), not only an ONNX file"
        )
    import torch

    exir = require("executorch.exir", "the ExecuTorch runtime")
    partitioner = require(
        "executorch.backends.xnnpack.partition.xnnpack_partitioner", "the ExecuTorch runtime"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    dst = out_dir / f"model_{precision}.pte"
    model = source.model.eval()
    example = torch.zeros(1, *source.input_shape)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if precision == "int8":
                if calib is None:
                    raise ConfigError("executorch int8 needs calibration samples (real data)")
                model = _quantize(model, example, calib)
            program = torch.export.export(model, (example,))
            lowered = exir.to_edge_transform_and_lower(
                program, partitioner=[partitioner.XnnpackPartitioner()]
            ).to_executorch()
    except ConfigError:
        raise
    except Exception as exc:
        raise ModelError(f"ExecuTorch export failed: {exc.__class__.__name__}: {exc}") from None
    dst.write_bytes(lowered.buffer)
    return dst


class _Method:
    """The ``forward`` method of a loaded ``.pte`` program as a ``Predictor`` (batch 1 calls)."""

    def __init__(self, method: Any) -> None:
        self.method = method

    def run(self, batch: np.ndarray) -> np.ndarray:
        import torch

        outs = [
            self.method.execute([torch.from_numpy(np.ascontiguousarray(batch[i : i + 1]))])[0]
            for i in range(len(batch))
        ]
        return torch.cat(outs).numpy() if outs else np.empty((0,), dtype=np.float32)


def _load(path: Path) -> Predictor:
    runtime = require("executorch.runtime", "the ExecuTorch runtime")
    lib = require("executorch.extension.pybindings.portable_lib", "the ExecuTorch runtime")
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    logging.getLogger("executorch").setLevel(logging.ERROR)
    if not _ONE_THREAD:  # one thread, as every runtime here is timed (set once: it logs)
        lib._unsafe_reset_threadpool(1)
        _ONE_THREAD.append(True)
    try:
        program = runtime.Runtime.get().load_program(str(path))
        return _Method(program.load_method("forward"))
    except Exception as exc:
        raise ModelError(f"{path}: not a loadable ExecuTorch program ({exc})") from None


EXECUTORCH = Runtime(
    name="executorch",
    suffix=".pte",
    imports=("torch", "executorch.runtime", "executorch.extension.pybindings.portable_lib"),
    export=_export,
    load=_load,
    probe=None,
    from_torch=True,
    notes="torch.export -> XNNPACK-lowered .pte at batch 1; int8: PT2E XNNPACKQuantizer "
    "(symmetric, per-channel) on real calibration samples",
)
RUNTIMES.add("executorch", EXECUTORCH)
