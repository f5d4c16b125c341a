"""ONNX export with named inputs/outputs and a metadata record.

A model crosses component boundaries as an ONNX file plus ``ModelArtifact``:
input name and shape, output name, class labels and the file's sha256.
``export_graph`` is the one call of ``torch.onnx.export`` (``export_onnx`` and the
early-exit graphs use it); running an ONNX file needs no torch: ``edgeintel.onnx_files``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeintel.errors import ModelError
from edgeintel.onnx_files import file_sha256
from edgeintel.records import OPSET, ModelArtifact

__all__ = ["INPUT_NAME", "OPSET", "OUTPUT_NAME", "ModelArtifact", "export_graph", "export_onnx"]

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def export_graph(
    model: nn.Module, dummy: torch.Tensor, path: str | Path, inp: str, outs: list[str]
) -> None:
    """Trace ``model`` on ``dummy`` into ``path``: opset 17, input ``inp``, outputs ``outs``,
    every one with a dynamic batch axis; a failure is a one-line ``ModelError``."""
    axes = {n: {0: "batch"} for n in [inp, *outs]}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (dummy,),
                str(path),
                input_names=[inp],
                output_names=outs,
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
            )
    except Exception as exc:
        raise ModelError(f"ONNX export failed: {exc.__class__.__name__}: {exc}") from None


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
    try:
        export_graph(model, torch.zeros(1, *input_shape), path, INPUT_NAME, [OUTPUT_NAME])
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
