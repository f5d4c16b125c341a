"""Central / solo training: learns real data, deterministic by seed, validates its config."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeintel.data import load_dataset, train_test_split
from edgeintel.errors import ConfigError
from edgeintel.models import TrainConfig, build_model, evaluate_accuracy, train_model


def _digits() -> tuple[np.ndarray, ...]:
    ds = load_dataset("digits")
    tr, te = train_test_split(ds.y, 0.25, seed=0)
    return ds.x[tr], ds.y[tr], ds.x[te], ds.y[te]


def test_learns_digits() -> None:
    x, y, xt, yt = _digits()
    model = build_model("image_cnn", (1, 8, 8), 10, width=8, seed=0)
    hist = train_model(model, x, y, TrainConfig(epochs=6), seed=0, x_val=xt, y_val=yt)
    assert hist[-1].loss < hist[0].loss
    assert evaluate_accuracy(model, xt, yt) > 0.9


def test_same_seed_same_weights() -> None:
    x, y, _, _ = _digits()
    weights = []
    for _ in range(2):
        m = build_model("mlp", (1, 8, 8), 10, width=4, seed=3)
        train_model(m, x[:300], y[:300], TrainConfig(epochs=2), seed=3)
        weights.append(torch.cat([p.detach().flatten() for p in m.parameters()]))
    assert torch.equal(weights[0], weights[1])


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"lr": -1.0}, "lr must be > 0"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
    ],
)
def test_bad_config(kwargs: dict[str, float], msg: str) -> None:
    with pytest.raises(ConfigError, match=msg):
        TrainConfig(**kwargs)  # type: ignore[arg-type]
