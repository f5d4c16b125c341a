"""Data and model of a Flower run: the same seeded split and partition on every node."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from torch import nn

from edgeintel.data import load_dataset, partition, train_test_split
from edgeintel.models import build_model
from edgeintel.training.flower.settings import FlowerSettings

__all__ = ["TaskData", "client_shard", "load_task", "make_model"]


@dataclass(frozen=True)
class TaskData:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x_train.shape[1:])


@functools.lru_cache(maxsize=4)
def _load(dataset: str, test_fraction: float, seed: int) -> TaskData:
    ds = load_dataset(dataset)
    tr, te = train_test_split(ds.y, test_fraction, seed=seed)
    return TaskData(ds.x[tr], ds.y[tr], ds.x[te], ds.y[te], ds.num_classes)


def load_task(settings: FlowerSettings) -> TaskData:
    """The dataset split into train/test exactly as every other node splits it."""
    return _load(settings.dataset, settings.test_fraction, settings.seed)


def client_shard(settings: FlowerSettings, partition_id: int, num_partitions: int) -> np.ndarray:
    """Indices into the training split held by node ``partition_id`` of ``num_partitions``."""
    task = load_task(settings)
    parts = partition(
        task.y_train, num_partitions, settings.partition, seed=settings.seed, alpha=settings.alpha
    )
    return parts[partition_id]


def make_model(settings: FlowerSettings, task: TaskData) -> nn.Module:
    return build_model(
        settings.model, task.input_shape, task.num_classes, settings.width, seed=settings.seed
    )
