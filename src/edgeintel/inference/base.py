"""Compressor registry, the context a compressor sees, and input validation shared by all.

A compressor is one technique (``quantize_static``, ``prune_structured``, ...):
a validated frozen config class plus a function. Torch compressors map an
``nn.Module`` to a smaller ``nn.Module``; ONNX compressors map an ONNX file to
another ONNX file. Adding a technique is one ``@register_technique`` call.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
from torch import nn

from edgeintel.cpu import saturates_u8s8
from edgeintel.errors import ConfigError, DataError, ModelError
from edgeintel.registry import Registry
from edgeintel.tasks import TaskKind, make_task

__all__ = [
    "TECHNIQUES",
    "ArrayData",
    "CompressContext",
    "FinetuneMixin",
    "Finetuner",
    "StageKind",
    "TechniqueSpec",
    "TorchStage",
    "as_array_data",
    "check_reduce_range",
    "check_samples",
    "clone_model",
    "finetune",
    "reduce_range_here",
    "register_technique",
    "set_submodule",
]

C = TypeVar("C")

# fine-tunes a module in place (config: a FinetuneMixin) and returns per-epoch/round losses
Finetuner = Callable[[nn.Module, "FinetuneMixin", "CompressContext"], list[float]]


class StageKind(StrEnum):
    """Where a technique works: on the PyTorch module or on the exported ONNX graph."""

    TORCH = "torch"
    ONNX = "onnx"


@dataclass(frozen=True)
class ArrayData:
    """Samples ``x`` (float32, (N, *input_shape)) and labels ``y`` (int64, (N,))."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


def check_reduce_range(value: Any) -> None:
    """``ConfigError`` unless ``reduce_range`` is true, false or None (decided by the CPU)."""
    if value is not None and not isinstance(value, bool):
        raise ConfigError(
            f"reduce_range must be true, false or left out (7-bit weights where this CPU's "
            f"int8 kernels saturate), got {value!r}"
        )


def reduce_range_here(setting: bool | None) -> bool:
    """``reduce_range`` as set, or (None) whether this CPU's int8 kernels saturate."""
    return saturates_u8s8() if setting is None else bool(setting)


def check_samples(x: Any, input_shape: tuple[int, ...], what: str) -> np.ndarray:
    """``x`` as float32 (N, *input_shape); DataError naming ``what`` on a wrong dtype or shape.

    Integer arrays are refused rather than cast: raw uint8 pixels would calibrate or
    train a model on a different scale than it sees in use (a silently wrong artifact).
    """
    if not isinstance(x, np.ndarray):
        raise DataError(f"{what}: expected a numpy array, got {type(x).__name__}")
    if not np.issubdtype(x.dtype, np.floating):
        raise DataError(
            f"{what}: expected floating-point samples (float32) scaled like the training data, "
            f"got dtype {x.dtype}"
        )
    want = (len(x), *input_shape)
    if x.ndim != len(input_shape) + 1 or tuple(x.shape[1:]) != tuple(input_shape):
        raise DataError(
            f"{what}: expected shape (N, {', '.join(map(str, input_shape))}), got {tuple(x.shape)}"
        )
    if len(x) == 0:
        raise DataError(f"{what}: no samples")
    if not np.isfinite(x).all():
        raise DataError(f"{what}: samples contain NaN or inf")
    return np.ascontiguousarray(x.reshape(want), dtype=np.float32)


def as_array_data(
    data: Any, input_shape: tuple[int, ...], what: str, task: TaskKind | None = None
) -> ArrayData:
    """Accept a ``Dataset``, an ``ArrayData`` or an ``(x, y)`` pair; validate shapes and
    targets: integer labels, or for a kind with real-valued targets (``task.label_dtype``
    floating, e.g. regression) finite numbers, one row per sample."""
    if data is None:
        raise DataError(f"{what}: no data given")
    if isinstance(data, tuple) and len(data) == 2:
        x, y = data
    elif hasattr(data, "x") and hasattr(data, "y"):
        x, y = data.x, data.y
    else:
        raise DataError(f"{what}: expected a Dataset or an (x, y) pair, got {type(data).__name__}")
    xs = check_samples(x, input_shape, f"{what}.x")
    ys = np.asarray(y)
    dtype = np.int64 if task is None else task.label_dtype
    if np.issubdtype(dtype, np.floating):
        if len(ys) != len(xs) or not np.issubdtype(ys.dtype, np.number):
            raise DataError(f"{what}.y: expected {len(xs)} numeric targets, got shape {ys.shape}")
        if not np.isfinite(ys).all():
            raise DataError(f"{what}.y: targets contain NaN or inf")
        return ArrayData(xs, ys.astype(dtype))
    if ys.ndim != 1 or len(ys) != len(xs) or not np.issubdtype(ys.dtype, np.integer):
        raise DataError(f"{what}.y: expected {len(xs)} integer labels, got shape {ys.shape}")
    return ArrayData(xs, ys.astype(np.int64))


@dataclass
class CompressContext:
    """What a compressor may use besides the model: data, the original model, seed, folder.

    ``family`` and ``width`` describe the original zoo model where known (distillation
    builds its student from them). ``num_classes`` is the number of logits.
    ``finetuner``, when set, replaces the central fine-tuning of :func:`finetune` (and
    of QAT, pruning, low-rank, compact layers): the pipeline sets it to federated rounds
    over the device shards after edge training, so ``train`` is never fitted on.
    ``task`` is the task kind whose loss fine-tuning and distillation minimise.
    """

    input_shape: tuple[int, ...]
    num_classes: int
    labels: list[str]
    train: ArrayData
    calib_x: np.ndarray
    workdir: Path
    seed: int = 0
    teacher: nn.Module | None = None
    family: str | None = None
    width: int | None = None
    finetuner: Finetuner | None = None
    task: TaskKind = field(default_factory=lambda: make_task("classification"))


@dataclass
class TorchStage:
    """A torch compressor's result: the new module and the layers it reported and left alone."""

    model: nn.Module
    warnings: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TechniqueSpec(Generic[C]):
    """A registered technique: name, config class, where it works, and its function."""

    name: str
    config_cls: type[C]
    kind: StageKind
    fn: Callable[..., Any]
    summary: str

    def make_config(self, options: dict[str, Any] | None) -> C:
        """Build the validated config; unknown or ill-typed options raise a one-line ConfigError."""
        options = dict(options or {})
        known = {f.name for f in dataclasses.fields(self.config_cls)}  # type: ignore[arg-type]
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(
                f"{self.name}: unknown option {unknown[0]!r}; expected one of: "
                f"{', '.join(sorted(known)) or 'none'}"
            )
        try:
            return self.config_cls(**options)
        except ConfigError as exc:
            raise ConfigError(f"{self.name}.{exc}") from None
        except TypeError as exc:
            raise ConfigError(f"{self.name}: {exc}") from None


TECHNIQUES: Registry[TechniqueSpec[Any]] = Registry("compression technique")
# the built-in techniques register when their module is imported, on the first use of a name
TECHNIQUES.provide("edgeintel.inference.quantize", "quantize_static", "quantize_dynamic")
TECHNIQUES.provide("edgeintel.inference.prune", "prune_structured", "prune_unstructured")
TECHNIQUES.provide("edgeintel.inference.lowrank", "low_rank")
TECHNIQUES.provide("edgeintel.inference.compact", "compact")
TECHNIQUES.provide("edgeintel.inference.distill", "distill")
TECHNIQUES.provide("edgeintel.inference.qat", "qat")


def register_technique(
    name: str, config_cls: type[C], kind: StageKind
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering ``fn(model_or_path, config, ctx, ...)`` as technique ``name``."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        doc = (fn.__doc__ or "").strip().splitlines()
        TECHNIQUES.add(name, TechniqueSpec(name, config_cls, kind, fn, doc[0] if doc else ""))
        return fn

    return deco


@dataclass(frozen=True)
class FinetuneMixin:
    """Fine-tuning after a structural change: ``finetune_epochs`` Adam epochs at ``lr``,
    extended on small datasets so that at least ``min_finetune_steps`` updates run."""

    finetune_epochs: int = 2
    lr: float = 1e-3
    batch_size: int = 64
    min_finetune_steps: int = 60

    def _check_finetune(self) -> None:
        if self.finetune_epochs < 0:
            raise ConfigError(f"finetune_epochs must be >= 0, got {self.finetune_epochs}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.batch_size < 2:
            raise ConfigError(f"batch_size must be >= 2, got {self.batch_size}")
        if self.min_finetune_steps < 0:
            raise ConfigError(f"min_finetune_steps must be >= 0, got {self.min_finetune_steps}")


def finetune(model: nn.Module, cfg: FinetuneMixin, ctx: CompressContext) -> list[float]:
    """Fine-tune ``model`` in place on the training data; returns per-epoch training loss.

    With ``ctx.finetuner`` set (federated fine-tuning after edge training) the call is
    handed to it and ``ctx.train`` is not touched.
    """
    from edgeintel.models.train import TrainConfig, train_model

    if cfg.finetune_epochs == 0:
        return []
    if ctx.finetuner is not None:
        return ctx.finetuner(model, cfg, ctx)
    steps_per_epoch = max(1, -(-len(ctx.train) // cfg.batch_size))
    epochs = max(cfg.finetune_epochs, -(-cfg.min_finetune_steps // steps_per_epoch))
    # threads=None: fine-tuning runs on the caller's thread limit (the pipeline's threads)
    tc = TrainConfig(epochs=epochs, batch_size=cfg.batch_size, lr=cfg.lr, threads=None)
    hist = train_model(model, ctx.train.x, ctx.train.y, tc, seed=ctx.seed, task=ctx.task)
    return [h.loss for h in hist]


def set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the submodule at dotted path ``name`` by ``new``."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def clone_model(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode (compressors never modify their input)."""
    try:
        out = copy.deepcopy(model)
    except Exception as exc:
        raise ModelError(f"cannot copy the model: {exc}") from None
    out.eval()
    return out
