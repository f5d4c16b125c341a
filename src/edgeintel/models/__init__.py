"""Model zoo (PyTorch), the plain trainer below every component, and ONNX export."""

from edgeintel.models.export import (
    INPUT_NAME,
    OUTPUT_NAME,
    ModelArtifact,
    export_onnx,
    file_sha256,
    make_session,
    onnx_predict,
)
from edgeintel.models.train import (
    EpochRecord,
    TrainConfig,
    evaluate_accuracy,
    predict_logits,
    train_model,
)
from edgeintel.models.zoo import MODELS, build_model, count_params

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
    "file_sha256",
    "make_session",
    "onnx_predict",
    "predict_logits",
    "train_model",
]
