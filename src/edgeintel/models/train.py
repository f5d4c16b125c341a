"""Local training of a PyTorch model on arrays: the central baseline and solo device training."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from edgeintel.errors import ConfigError, DataError, TrainingError
from edgeintel.tasks import TaskKind, make_task
from edgeintel.threads import DEFAULT_THREADS, thread_limit

__all__ = [
    "LR_SCHEDULES",
    "EpochRecord",
    "TrainConfig",
    "evaluate_accuracy",
    "evaluate_task",
    "make_lr_scheduler",
    "predict_logits",
    "steps_per_epoch",
    "train_model",
]


#: learning-rate schedules over a training run's optimizer steps (``TrainConfig.lr_schedule``):
#: ``constant`` keeps ``lr``; ``cosine`` anneals it from ``lr`` to 0 along half a cosine
#: (``CosineAnnealingLR``); ``onecycle`` warms up from ``lr / 25`` to ``lr`` over the first
#: 30% of the steps, then anneals along a cosine to ``lr / 25e4`` (``OneCycleLR``, the
#: learning rate only: Adam's betas are not cycled).
LR_SCHEDULES = ("constant", "cosine", "onecycle")


@dataclass(frozen=True)
class TrainConfig:
    """Mini-batch Adam training; ``lr`` is the learning rate, ``epochs`` full passes,
    ``lr_schedule`` how the rate moves over the optimizer steps (``LR_SCHEDULES``).

    ``threads``: torch/BLAS threads while training (``None``: keep the caller's setting).
    """

    epochs: int = 10
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.0
    threads: int | None = DEFAULT_THREADS
    lr_schedule: str = "constant"

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(
                f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}"
            )


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimizer steps in one epoch over ``n`` samples: a last batch of one sample is
    skipped (BatchNorm needs two) unless it is the whole set."""
    full, rest = divmod(n, batch_size)
    return full + (1 if rest >= 2 or (rest == 1 and n == 1) else 0)


def make_lr_scheduler(
    opt: torch.optim.Optimizer, schedule: str, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The ``torch.optim.lr_scheduler`` of ``schedule`` over ``total_steps`` optimizer
    steps (stepped once after each), at the optimizer's learning rate; ``None`` for
    ``constant``."""
    if schedule == "constant":
        return None
    lr = float(opt.param_groups[0]["lr"])
    steps = max(total_steps, 1)
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    if schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=lr, total_steps=max(steps, 2), cycle_momentum=False
        )
    raise ConfigError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {schedule!r}")


@dataclass(frozen=True)
class EpochRecord:
    """One epoch: mean training loss (the task kind's), and for classification the train and
    validation accuracy; for other kinds those are None and ``val_metric`` holds the kind's
    headline metric on the validation arrays (``TaskKind.metric``, e.g. RMSE)."""

    epoch: int
    loss: float
    train_accuracy: float | None
    val_accuracy: float | None
    val_metric: float | None = None

    def to_json(self) -> dict[str, float | int | None]:
        out = asdict(self)
        if out["val_metric"] is None:
            del out["val_metric"]
        return out


def predict_logits(model: nn.Module, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Logits of ``model`` for ``x`` in eval mode, as a float32 array."""
    was_training = model.training
    model.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            outs.append(
                model(torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size]))).numpy()
            )
    model.train(was_training)
    return np.concatenate(outs) if outs else np.empty((0, 0), dtype=np.float32)


def evaluate_accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy in [0, 1]."""
    if len(y) == 0:
        raise DataError("cannot evaluate accuracy on an empty set")
    return float((predict_logits(model, x).argmax(1) == y).mean())


def evaluate_task(
    model: nn.Module, x: np.ndarray, y: np.ndarray, task: TaskKind
) -> dict[str, float]:
    """Every metric of ``task`` for ``model`` on ``(x, y)`` (``TaskKind.evaluate``)."""
    if len(y) == 0:
        raise DataError(f"cannot evaluate {task.metric} on an empty set")
    return task.evaluate(task.predict(predict_logits(model, x), x), y)


def train_model(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    config: TrainConfig,
    seed: int = 0,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    task: TaskKind | None = None,
) -> list[EpochRecord]:
    """Train ``model`` in place with Adam and the loss of ``task`` (default classification:
    cross-entropy); returns one record per epoch.

    The same seed, data and config give the same weights.
    """
    if len(y) == 0:
        raise DataError("cannot train on an empty set")
    # seeded and thread-limited here without touching the process-wide settings
    with torch.random.fork_rng(devices=[]), thread_limit(config.threads):
        torch.manual_seed(seed)
        kind = task if task is not None else make_task("classification")
        return _train(model, x, y, config, seed, x_val, y_val, on_epoch, kind)


def _train(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    config: TrainConfig,
    seed: int,
    x_val: np.ndarray | None,
    y_val: np.ndarray | None,
    on_epoch: Callable[[EpochRecord], None] | None,
    task: TaskKind,
) -> list[EpochRecord]:
    gen = np.random.default_rng(seed)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = make_lr_scheduler(
        opt, config.lr_schedule, config.epochs * steps_per_epoch(len(y), config.batch_size)
    )
    labelled = task.metric == "accuracy"
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    yt = torch.from_numpy(np.asarray(y, dtype=task.label_dtype))
    history: list[EpochRecord] = []
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = torch.from_numpy(gen.permutation(len(y)))
        total, correct, seen = 0.0, 0, 0
        for i in range(0, len(order), config.batch_size):
            idx = order[i : i + config.batch_size]
            if len(idx) < 2 and len(order) > 1:
                continue  # BatchNorm needs more than one sample per batch
            xb, yb = xt[idx], yt[idx]
            opt.zero_grad()
            out = model(xb)
            loss = task.loss(out, task.target(xb, yb))
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"training diverged at epoch {epoch}: the loss is {loss.item()} "
                    f"(learning rate {config.lr:g}); lower the learning rate or check the "
                    "inputs' scale"
                )
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            total += loss.item() * len(idx)
            if labelled:
                correct += int((out.argmax(1) == yb).sum())
            seen += len(idx)
        if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            raise TrainingError(
                f"training diverged in epoch {epoch}: the model's weights are NaN or infinite "
                f"(learning rate {config.lr:g}); lower the learning rate or check the inputs' "
                "scale"
            )
        val = None
        if x_val is not None and y_val is not None and len(y_val):
            val = evaluate_task(model, x_val, y_val, task).get(task.metric)
        loss_mean = total / max(seen, 1)
        if labelled:
            rec = EpochRecord(epoch, loss_mean, correct / max(seen, 1), val)
        else:
            rec = EpochRecord(epoch, loss_mean, None, None, val_metric=val)
        history.append(rec)
        if on_epoch is not None:
            on_epoch(rec)
    model.eval()
    return history
