"""Solo training on one device: a batch size that fits its memory, time and energy estimates.

The batch size is the largest power of two up to the requested one whose
training memory fits half the device's ``memory_mb`` (MiB, 2**20 bytes, as everywhere
in edgeintel; the other half is left to
the OS and the app). Training memory is estimated as float32 weights + gradients
+ Adam's two moments for trainable parameters + twice the activations of one
batch (forward outputs kept for backward), counted with forward hooks.
Time is measured here (median time of a real training step) and scaled by the
device's ``compute_speed``; energy is ``power_compute_w * time``.

``finetune_layers``: train only the last N parametrized layers of a shared
model (the rest frozen, their BatchNorm statistics kept) on local data.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeintel.errors import ConfigError, DataError
from edgeintel.models.train import EpochRecord, TrainConfig, train_model
from edgeintel.tasks import TaskKind, make_task
from edgeintel.topology import DeviceProfile

__all__ = ["SoloPlan", "SoloResult", "freeze_all_but_last", "plan_solo", "train_solo"]

_MEMORY_SHARE = 0.5
MIB = 1024 * 1024
"""Bytes per MiB: every ``*_mb`` memory figure in edgeintel is in MiB."""


@dataclass(frozen=True)
class SoloPlan:
    """Solo training on a device: batch size, epochs, memory (MiB), time (s), energy (J)."""

    batch_size: int
    epochs: int
    steps: int
    trainable_params: int
    memory_mb: float
    step_ms_here: float
    est_time_s: float
    est_energy_j: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SoloResult:
    plan: SoloPlan
    history: list[EpochRecord]


def freeze_all_but_last(model: nn.Module, n_layers: int) -> int:
    """Freeze all parametrized leaf modules but the last ``n_layers``; return trainable params."""
    leaves = [m for m in model.modules() if not list(m.children()) and list(m.parameters())]
    if not 1 <= n_layers <= len(leaves):
        raise ConfigError(f"finetune_layers must lie in [1, {len(leaves)}], got {n_layers}")
    for m in leaves[: len(leaves) - n_layers]:
        for p in m.parameters():
            p.requires_grad_(False)
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = 0.0  # keep the shared model's running statistics
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _activation_floats(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    total = 0

    def hook(_m: nn.Module, _i: Any, out: Any) -> None:
        nonlocal total
        if isinstance(out, torch.Tensor):
            total += out.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    was = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *input_shape))
    model.train(was)
    for h in handles:
        h.remove()
    return total


def _step_ms(
    model: nn.Module, x: np.ndarray, y: np.ndarray, batch: int, lr: float, task: TaskKind
) -> float:
    m = copy.deepcopy(model)
    m.train()
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=lr)
    idx = np.arange(batch) % len(y)
    xb = torch.from_numpy(x[idx])
    yb = torch.from_numpy(np.asarray(y[idx], dtype=task.label_dtype))
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        opt.zero_grad()
        task.loss(m(xb), task.target(xb, yb)).backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]) * 1000.0)


def plan_solo(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    profile: DeviceProfile,
    batch_size: int,
    epochs: int,
    lr: float = 3e-3,
    time_budget_s: float | None = None,
    task: TaskKind | None = None,
) -> SoloPlan:
    """Pick a batch size within memory and epochs within ``time_budget_s`` (device seconds)."""
    if len(y) == 0:
        raise DataError("this device has no training data")
    input_shape = tuple(int(d) for d in x.shape[1:])
    n_all = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    acts = _activation_floats(model, input_shape)
    per_sample = 4 * (2 * acts + math.prod(input_shape))
    fixed = 4 * n_all + 12 * n_train
    budget = profile.memory_mb * MIB * _MEMORY_SHARE
    batch = 1 << max(0, math.floor(math.log2(max(1, min(batch_size, len(y))))))
    while batch > 1 and fixed + batch * per_sample > budget:
        batch //= 2
    if fixed + batch * per_sample > budget:
        raise ConfigError(
            f"device memory_mb={profile.memory_mb} cannot hold training of this model "
            f"(needs {(fixed + per_sample) / MIB / _MEMORY_SHARE:.1f} MiB at batch 1)"
        )
    kind = task if task is not None else make_task("classification")
    step_ms = _step_ms(model, x, y, batch, lr, kind)
    steps_per_epoch = math.ceil(len(y) / batch)
    epoch_s = steps_per_epoch * step_ms / 1000.0 / profile.compute_speed
    if time_budget_s is not None:
        epochs = min(epochs, int(time_budget_s // epoch_s))
        if epochs < 1:
            raise ConfigError(
                f"time budget {time_budget_s} s is shorter than one epoch on this device "
                f"({epoch_s:.2f} s)"
            )
    t = epochs * epoch_s
    return SoloPlan(
        batch_size=batch,
        epochs=epochs,
        steps=epochs * steps_per_epoch,
        trainable_params=n_train,
        memory_mb=round((fixed + batch * per_sample) / MIB, 3),
        step_ms_here=step_ms,
        est_time_s=t,
        est_energy_j=profile.power_compute_w * t,
    )


def train_solo(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    profile: DeviceProfile,
    config: TrainConfig,
    seed: int = 0,
    finetune_layers: int | None = None,
    time_budget_s: float | None = None,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    task: TaskKind | None = None,
) -> SoloResult:
    """Train ``model`` in place on one device's data within its memory (and time) budget,
    with the loss of ``task`` (``None``: classification)."""
    if finetune_layers is not None:
        freeze_all_but_last(model, finetune_layers)
    plan = plan_solo(
        model, x, y, profile, config.batch_size, config.epochs, config.lr, time_budget_s, task
    )
    cfg = TrainConfig(
        epochs=plan.epochs,
        batch_size=plan.batch_size,
        lr=config.lr,
        weight_decay=config.weight_decay,
        threads=config.threads,
        lr_schedule=config.lr_schedule,
    )
    history = train_model(model, x, y, cfg, seed=seed, x_val=x_val, y_val=y_val, task=task)
    return SoloResult(plan, history)
