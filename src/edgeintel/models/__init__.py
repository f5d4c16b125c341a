"""Model zoo (PyTorch) and ONNX export."""

from edgeintel.models.export import (
    INPUT_NAME,
    OUTPUT_NAME,
    ModelArtifact,
    export_onnx,
    file_sha256,
    make_session,
    onnx_predict,
)
from edgeintel.models.zoo import MODELS, build_model, count_params

# registers the torchvision families (mobilenet_v3_small, resnet18, googlenet) in MODELS
from edgeintel.models import vision as _vision  # noqa: F401  # isort: skip

__all__ = [
    "INPUT_NAME",
    "MODELS",
    "OUTPUT_NAME",
    "ModelArtifact",
    "build_model",
    "count_params",
    "export_onnx",
    "file_sha256",
    "make_session",
    "onnx_predict",
]
