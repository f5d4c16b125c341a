"""Model zoo (PyTorch), the plain trainer below every component, and ONNX export.

A lazy face (``edgeintel.lazy``): the names below load torch on first use;
``models.families`` (the family names a scenario may use) needs none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeintel.lazy import lazy_face

if TYPE_CHECKING:
    from edgeintel.models.export import INPUT_NAME, OUTPUT_NAME, ModelArtifact, export_onnx
    from edgeintel.models.families import MODELS
    from edgeintel.models.train import (
        EpochRecord,
        TrainConfig,
        evaluate_accuracy,
        predict_logits,
        train_model,
    )
    from edgeintel.models.zoo import build_model, count_params

__all__ = [
    "INPUT_NAME",
    "MODELS",
    "OUTPUT_NAME",
    "EpochRecord",
    "ModelArtifact",
    "TrainConfig",
    "build_model",
    "count_params",
    "evaluate_accuracy",
    "export_onnx",
    "predict_logits",
    "train_model",
]

__getattr__, __dir__ = lazy_face(__name__, __file__)
