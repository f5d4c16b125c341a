"""Shared fixtures: a small image CNN trained on real digits (8x8), split train/test."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from torch import nn

from edgeintel.data import load_dataset, train_test_split
from edgeintel.models import build_model, export_onnx
from edgeintel.models.train import TrainConfig, evaluate_accuracy, train_model


@dataclass
class Trained:
    model: nn.Module
    x_tr: np.ndarray
    y_tr: np.ndarray
    x_te: np.ndarray
    y_te: np.ndarray
    accuracy: float
    onnx_path: Path
    classes: list[str]

    @property
    def train(self) -> tuple[np.ndarray, np.ndarray]:
        return self.x_tr, self.y_tr

    @property
    def test(self) -> tuple[np.ndarray, np.ndarray]:
        return self.x_te, self.y_te


@pytest.fixture(scope="session")
def digits_cnn(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    ds = load_dataset("digits")
    tr, te = train_test_split(ds.y, 0.25, seed=0)
    model = build_model("image_cnn", ds.sample_shape, ds.num_classes, width=16, seed=0)
    train_model(model, ds.x[tr], ds.y[tr], TrainConfig(epochs=6, batch_size=32), seed=0)
    acc = evaluate_accuracy(model, ds.x[te], ds.y[te])
    path = tmp_path_factory.mktemp("digits") / "fp32.onnx"
    export_onnx(model, ds.sample_shape, path, ds.classes)
    return Trained(model, ds.x[tr], ds.y[tr], ds.x[te], ds.y[te], acc, path, ds.classes)
