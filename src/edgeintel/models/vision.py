"""Edge-vision models of realistic size from torchvision architectures (no downloaded weights).

Registered in ``MODELS`` beside the small zoo families, built as
``factory(input_shape, num_classes, width)`` with random initialisation:

- ``mobilenet_v3_small``: a chain of inverted-residual blocks (each block has a
  short internal skip and a squeeze-excitation branch, but between blocks
  exactly one tensor flows): the chain case of DNN partitioning;
- ``resnet18``: basic blocks with identity / projection skip connections: the DAG case;
- ``googlenet``: inception modules with four parallel branches (a wide DAG).

Inputs must be (3, H, W) images with H, W >= 96 (smaller images collapse the
feature maps of these architectures). ``width`` scales MobileNetV3-Small: it
is the stem's channel count (16 = the published network, 8 = width multiplier
0.5, every layer's channels scaled alike); ResNet-18 and GoogLeNet keep their
published widths.

torchvision's wheel on PyPI is built against CUDA torch; with the CPU torch
this project pins, its compiled operators (NMS, RoI align; none of which these
classifiers use) cannot load and ``import torchvision`` fails while registering
fake kernels for ``torchvision::nms``. ``_torchvision_models`` declares those
two operator schemas first when the extension is absent, so the pure-Python
architectures import cleanly.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from torch import nn

from edgeintel.errors import ModelError
from edgeintel.models.families import MODELS

__all__ = ["MIN_IMAGE_SIZE", "VISION_MODELS", "googlenet", "mobilenet_v3_small", "resnet18"]

MIN_IMAGE_SIZE = 96
VISION_MODELS = ("mobilenet_v3_small", "resnet18", "googlenet")

_SHIM: Any = None  # keeps the schema library alive (operators deregister when it is collected)


def _torchvision_models() -> ModuleType:
    """``torchvision.models``, importable with CPU torch even when torchvision's ops cannot load."""
    global _SHIM
    import sys

    if "torchvision" not in sys.modules and _SHIM is None:
        import importlib.util
        from pathlib import Path

        import torch

        spec = importlib.util.find_spec("torchvision")
        if spec is None or not spec.submodule_search_locations:
            raise ModelError("torchvision is not installed; pip install 'torchvision==0.28.0'")
        libs = sorted(Path(next(iter(spec.submodule_search_locations))).glob("_C*.so"))
        try:
            torch.ops.load_library(str(libs[0]))
        except (IndexError, OSError):
            lib = torch.library.Library("torchvision", "FRAGMENT")
            for op in ("nms", "qnms"):
                lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            _SHIM = lib
    import torchvision.models as tvm

    return tvm


def _check_image(name: str, input_shape: tuple[int, ...]) -> None:
    if len(input_shape) != 3 or int(input_shape[0]) != 3:
        raise ModelError(f"task.model {name!r}: needs (3, H, W) RGB images, got {input_shape}")
    if min(input_shape[1:]) < MIN_IMAGE_SIZE:
        raise ModelError(
            f"task.model {name!r}: images must be at least {MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE}, "
            f"got {input_shape[1]}x{input_shape[2]}; set data.image_size >= {MIN_IMAGE_SIZE}"
        )


@MODELS.register("mobilenet_v3_small")
def mobilenet_v3_small(
    input_shape: tuple[int, ...], num_classes: int, width: int = 16
) -> nn.Module:
    """torchvision MobileNetV3-Small (1.5 M params at 3 classes; ~12 MFLOPs at 96x96).

    ``width``: stem channels; the width multiplier is ``width / 16`` (16 = published).
    """
    _check_image("mobilenet_v3_small", input_shape)
    if width % 4:
        raise ModelError(
            f"task.width {width} for mobilenet_v3_small must be a multiple of 4 "
            "(the stem's channels; 16 = the published network)"
        )
    model: nn.Module = _torchvision_models().mobilenet_v3_small(
        num_classes=num_classes, width_mult=width / 16
    )
    # torchvision sets BatchNorm momentum 0.01 for ImageNet's long schedules; on the few
    # hundred steps of an edge scenario the running statistics stay near their init and
    # eval-mode accuracy sits at chance while training accuracy is 1.0 (smart camera:
    # 0.50 vs 1.00). 0.3 tracks them within a few local steps (central and federated: 1.00).
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.3
    return model


@MODELS.register("resnet18")
def resnet18(input_shape: tuple[int, ...], num_classes: int, width: int = 16) -> nn.Module:
    """torchvision ResNet-18 (11.2 M params; ~330 MFLOPs at 96x96); skip connections."""
    _check_image("resnet18", input_shape)
    return _torchvision_models().resnet18(num_classes=num_classes)  # type: ignore[no-any-return]


@MODELS.register("googlenet")
def googlenet(input_shape: tuple[int, ...], num_classes: int, width: int = 16) -> nn.Module:
    """torchvision GoogLeNet without auxiliary heads (5.6 M params); four-branch inception."""
    _check_image("googlenet", input_shape)
    return _torchvision_models().googlenet(  # type: ignore[no-any-return]
        num_classes=num_classes, aux_logits=False, init_weights=True
    )
