"""ONNX export with named inputs/outputs and a metadata record; ONNX Runtime sessions.

A model crosses component boundaries as an ONNX file plus ``ModelArtifact``:
input name and shape, output name, class labels and the file's sha256.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeintel.errors import ModelError
from edgeintel.onnx_files import file_sha256, make_session
from edgeintel.records import OPSET, ModelArtifact

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAME",
    "ModelArtifact",
    "export_onnx",
    "file_sha256",
    "make_session",
    "onnx_predict",
]

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def export_onnx(
    model: nn.Module,
    input_shape: tuple[int, ...],
    path: str | Path,
    labels: list[str],
    extra: dict[str, Any] | None = None,
) -> ModelArtifact:
    """Export ``model`` (eval mode, dynamic batch axis, opset 17) and write its metadata record.

    Uses the TorchScript exporter: it folds BatchNorm into convolutions and
    yields plain opset-17 graphs that ONNX Runtime's quantizer handles.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    dummy = torch.zeros(1, *input_shape)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (dummy,),
                str(path),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
    except Exception as exc:
        raise ModelError(f"ONNX export failed: {exc.__class__.__name__}: {exc}") from None
    finally:
        model.train(was_training)
    artifact = ModelArtifact(
        path=str(path),
        input_name=INPUT_NAME,
        input_shape=[int(d) for d in input_shape],
        output_name=OUTPUT_NAME,
        labels=list(labels),
        sha256=file_sha256(path),
        bytes=path.stat().st_size,
        extra=dict(extra or {}),
    )
    artifact.save()
    return artifact


def onnx_predict(session: Any, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits for ``x`` (N, ...) in batches; float32 in, float32 out."""
    name = session.get_inputs()[0].name
    outs = [
        session.run(None, {name: np.ascontiguousarray(x[i : i + batch_size], dtype=np.float32)})[0]
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(outs) if outs else np.empty((0,), dtype=np.float32)
