"""Knowledge distillation: train a smaller student on a teacher's soft labels.

Loss (Hinton et al., 2015): ``alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) +
(1 - alpha) * CE(s, y)`` with student logits ``s``, teacher logits ``t`` and
temperature ``T``. The student is a zoo family (default: the depthwise-separable
variant of the teacher's family) at ``width`` (default: the teacher's width).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from edgeintel.errors import ConfigError
from edgeintel.inference.base import CompressContext, StageKind, TorchStage, register_technique
from edgeintel.tasks import TaskKind, make_task

__all__ = ["DistillConfig", "distill_train", "distillation_loss", "student_family"]


@dataclass(frozen=True)
class DistillConfig:
    """Student ``student`` (zoo family or ``pkg.mod:fn``; ``auto``: the separable variant of
    the teacher) at ``width``; ``epochs`` (at least ``min_steps`` updates) of Adam at ``lr``;
    ``temperature`` > 0, ``alpha`` in [0, 1] (weight of the soft-label term)."""

    student: str = "auto"
    width: int | None = None
    epochs: int = 5
    lr: float = 3e-3
    batch_size: int = 64
    temperature: float = 4.0
    alpha: float = 0.7
    min_steps: int = 150

    def __post_init__(self) -> None:
        if self.width is not None and self.width < 1:
            raise ConfigError(f"width must be >= 1, got {self.width}")
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.batch_size < 2:
            raise ConfigError(f"batch_size must be >= 2, got {self.batch_size}")
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        if self.min_steps < 0:
            raise ConfigError(f"min_steps must be >= 0, got {self.min_steps}")
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"alpha must lie in [0, 1], got {self.alpha}")


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
    task: TaskKind | None = None,
    x: torch.Tensor | None = None,
) -> torch.Tensor:
    """``alpha`` x the kind's soft term (classification: soft-label KL scaled by T^2; others:
    squared error to the teacher's outputs) + ``(1 - alpha)`` x the kind's own loss on its
    target (cross-entropy on the labels; the input ``x`` for an autoencoder)."""
    kind = task if task is not None else make_task("classification")
    soft = kind.soft_loss(student_logits, teacher_logits, temperature)
    target = kind.target(x, labels) if x is not None else labels
    hard = kind.loss(student_logits, target)
    return alpha * soft + (1 - alpha) * hard


def student_family(config_student: str, teacher_family: str | None) -> str:
    """The student's zoo family: explicit, or the separable variant of the teacher's family."""
    if config_student != "auto":
        return config_student
    if teacher_family is None:
        raise ConfigError("distill.student: the teacher's family is unknown; name a zoo family")
    if teacher_family.endswith("_cnn"):
        return teacher_family[: -len("_cnn")] + "_dscnn"
    return teacher_family


def distill_train(
    student: nn.Module,
    teacher: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    config: DistillConfig,
    seed: int = 0,
    task: TaskKind | None = None,
) -> list[float]:
    """Train ``student`` in place from ``teacher``'s outputs on ``x`` with the loss of
    ``task`` (``None``: classification); per-epoch mean loss."""
    kind = task if task is not None else make_task("classification")
    with torch.random.fork_rng(devices=[]):  # seeded without touching the global RNG
        torch.manual_seed(seed)
        return _distill_loop(student, teacher, x, y, config, seed, kind)


def _distill_loop(
    student: nn.Module,
    teacher: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    config: DistillConfig,
    seed: int,
    task: TaskKind,
) -> list[float]:
    gen = np.random.default_rng(seed)
    teacher.eval()
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    yt = torch.from_numpy(np.asarray(y, dtype=task.label_dtype))
    with torch.no_grad():
        tl = torch.cat([teacher(xt[i : i + 512]) for i in range(0, len(xt), 512)])
    opt = torch.optim.Adam(student.parameters(), lr=config.lr)
    losses = []
    steps_per_epoch = max(1, -(-len(yt) // config.batch_size))
    epochs = max(config.epochs, -(-config.min_steps // steps_per_epoch))
    for _ in range(epochs):
        student.train()
        order = torch.from_numpy(gen.permutation(len(yt)))
        total, seen = 0.0, 0
        for i in range(0, len(order), config.batch_size):
            idx = order[i : i + config.batch_size]
            if len(idx) < 2:
                continue
            opt.zero_grad()
            xb = xt[idx]
            loss = distillation_loss(
                student(xb), tl[idx], yt[idx], config.temperature, config.alpha, task, xb
            )
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            seen += len(idx)
        losses.append(total / max(seen, 1))
    student.eval()
    return losses


@register_technique("distill", DistillConfig, StageKind.TORCH)
def _distill(model: nn.Module, config: DistillConfig, ctx: CompressContext) -> TorchStage:
    """Knowledge distillation into a smaller zoo student (temperature, alpha)."""
    from edgeintel.models.zoo import build_model

    family = student_family(config.student, ctx.family)
    width = config.width or ctx.width or 16
    student = build_model(family, ctx.input_shape, ctx.num_classes, width=width, seed=ctx.seed)
    losses = distill_train(
        student, model, ctx.train.x, ctx.train.y, config, seed=ctx.seed, task=ctx.task
    )
    return TorchStage(student, [], {"student": family, "width": width, "loss": losses})
