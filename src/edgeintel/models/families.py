"""The names of the model families, without torch: what a scenario's ``task.model`` may say.

``MODELS`` maps a family name to its factory ``factory(input_shape, num_classes, width)``;
the built-in families are declared here by name (``Registry.provide``) and registered by
``models/zoo.py`` and ``models/vision.py`` (torch) on the first ``MODELS.get``, so
validating a scenario imports no torch. ``resolve_model_ref`` pins a user factory
(``module:function``) to its file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from edgeintel.errors import ModelError
from edgeintel.registry import Registry

if TYPE_CHECKING:
    from torch import nn

__all__ = ["AUDIO_FAMILIES", "MODELS", "ModelFactory", "check_model_modality", "resolve_model_ref"]

ModelFactory = Callable[..., "nn.Module"]
MODELS: Registry[ModelFactory] = Registry("model family")
MODELS.provide(
    "edgeintel.models.zoo", "image_cnn", "image_dscnn", "sensor_cnn", "sensor_dscnn", "mlp"
)
MODELS.provide("edgeintel.models.vision", "mobilenet_v3_small", "resnet18", "googlenet")
MODELS.provide("edgeintel.models.audio", "kws_dscnn")

AUDIO_FAMILIES = frozenset({"kws_dscnn"})
"""Zoo families that take raw audio (their front end computes the features)."""


def check_model_modality(model: str, modality: str, dataset: str) -> None:
    """Refuse (``ModelError``, one line) a zoo family that cannot take the data: audio
    needs an audio family (its features are computed in the model), and an audio family
    needs audio. A user factory (``module:function``) is trusted."""
    if ":" in model:
        return
    audio_model = model in AUDIO_FAMILIES
    if modality == "audio" and not audio_model:
        raise ModelError(
            f"task.model {model!r} does not take audio: dataset {dataset!r} is raw audio; "
            f"expected an audio model ({', '.join(sorted(AUDIO_FAMILIES))}) or your own "
            "factory module:function"
        )
    if audio_model and modality != "audio":
        raise ModelError(
            f"task.model {model!r} takes raw audio, but dataset {dataset!r} holds {modality} "
            "data; expected an audio dataset (voice_commands) or another model family"
        )


def resolve_model_ref(ref: str, base_dir: str | Path | None) -> str:
    """Pin a user factory in a scenario's folder to its file: ``/abs/dir/mod.py:function``.

    ``mod:function`` (or ``pkg.mod:function``) becomes the absolute path of
    ``base_dir/mod.py`` (``base_dir/pkg/mod.py``) when that file exists, so it is
    later imported by its path and never through ``sys.path``; ``path.py:function``
    is resolved against ``base_dir``. Anything else (a zoo family, an installed
    package's module) is returned unchanged.
    """
    module, sep, attr = ref.rpartition(":")
    if not sep or base_dir is None:
        return ref
    base = Path(base_dir)
    if module.endswith(".py"):
        path = Path(module) if Path(module).is_absolute() else base / module
        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        return f"{path.resolve()}:{attr}"
    candidate = base.joinpath(*module.split(".")).with_suffix(".py")
    if candidate.is_file():
        return f"{candidate.resolve()}:{attr}"
    return ref
