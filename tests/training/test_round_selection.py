"""The exported round is the one best on validation; BatchNorm statistics follow the round."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgeintel.data import load_dataset, partition, train_test_split
from edgeintel.models import build_model
from edgeintel.models.train import evaluate_accuracy
from edgeintel.training import ClientSpec, FederatedConfig, FederatedEngine
from edgeintel.training.client_train import LocalTrainer
from edgeintel.training.private import restore_engine, state_checkpoint
from edgeintel.training.weights import flatten, get_weights, unflatten


def _bn_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1, bias=False),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(3, 4),
    )


@pytest.mark.parametrize("mode", ["loop", "vmap"])
def test_round_stats_are_the_mean_of_the_rounds_batch_statistics(mode: str) -> None:
    rng = np.random.default_rng(0)
    x = (3.0 + rng.standard_normal((40, 1, 5, 5))).astype(np.float32)
    y = rng.integers(0, 4, 40)
    model = _bn_model()
    w0 = flatten(get_weights(model))
    batches = np.arange(40).reshape(1, 4, 10)
    mask = np.ones((1, 4), np.float32)
    # lr 0: the convolution stays fixed, so every step's batch statistics are known
    out = LocalTrainer(model, x, y, 0.0, mode=mode).train(w0[None], batches, mask)[0]
    conv = _bn_model()[0]
    with torch.no_grad():
        acts = [conv(torch.from_numpy(x[b])) for b in batches[0]]
    mean = torch.stack([a.mean((0, 2, 3)) for a in acts]).mean(0).numpy()
    var = torch.stack([a.var((0, 2, 3), unbiased=True) for a in acts]).mean(0).numpy()
    names = [k for k, v in model.state_dict().items() if torch.is_floating_point(v)]
    shapes = [v.shape for v in get_weights(model)]
    got = dict(zip(names, unflatten(out, shapes), strict=True))
    np.testing.assert_allclose(got["1.running_mean"], mean, rtol=1e-5)
    np.testing.assert_allclose(got["1.running_var"], var, rtol=1e-4)
    # the layers' own momentum keeps 0.9^4 = 66% of the initial statistics (mean 0)
    old = LocalTrainer(model, x, y, 0.0, mode=mode, bn_stats="momentum")
    kept = dict(zip(names, unflatten(old.train(w0[None], batches, mask)[0], shapes), strict=True))
    assert np.all(np.abs(kept["1.running_mean"]) < 0.5 * np.abs(mean))
    assert model[1].momentum == 0.1  # the wrapped model's own setting is restored


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, ...]:
    ds = load_dataset("digits")
    tr, te = train_test_split(ds.y, 0.4, seed=0)
    half = len(te) // 2  # validation and test: disjoint halves of the held-out digits
    return ds.x[tr], ds.y[tr], ds.x[te[:half]], ds.y[te[:half]], ds.x[te[half:]], ds.y[te[half:]]


def _engine(digits: tuple[np.ndarray, ...], val: bool = True, rounds: int = 6) -> FederatedEngine:
    x, y, xv, yv, xt, yt = digits
    parts = partition(y, 6, "dirichlet", 0, alpha=0.3)
    model = build_model("image_cnn", x.shape[1:], 10, width=4, seed=0)
    cfg = FederatedConfig(rounds=rounds, local_steps=4, batch_size=16, lr=0.3, seed=1)
    clients = [ClientSpec(f"d{i}", "cloud") for i in range(6)]
    return FederatedEngine(model, x, y, parts, clients, xt, yt, cfg, 10,
                           x_val=xv if val else None, y_val=yv if val else None)  # fmt: skip


def test_the_exported_round_is_the_first_best_on_validation(
    digits: tuple[np.ndarray, ...],
) -> None:
    eng = _engine(digits)
    eng.run()
    vals = [r.val_metric for r in eng.state.history]
    assert all(v is not None for v in vals)
    best = int(np.argmax(vals)) + 1  # argmax: the first of equals
    model, sel = eng.selected_model()
    assert sel == best == eng.state.best_round
    # the returned model carries that round's weights: its validation accuracy is that round's
    assert evaluate_accuracy(model, digits[2], digits[3]) == pytest.approx(vals[best - 1])
    # without a validation split the last round ships
    plain = _engine(digits, val=False, rounds=2)
    plain.run()
    assert plain.selected_model()[1] == 2 and plain.state.history[-1].val_metric is None


def test_the_selection_survives_a_checkpoint(digits: tuple[np.ndarray, ...]) -> None:
    full = _engine(digits, rounds=4)
    full.run()
    half = _engine(digits, rounds=4)
    half.run(rounds=2)
    resumed = _engine(digits, rounds=4)
    restore_engine(resumed, state_checkpoint(half.state))
    assert resumed.state.best_round == half.state.best_round
    resumed.run()
    assert resumed.state.best_round == full.state.best_round
    assert resumed.state.best_weights is not None and full.state.best_weights is not None
    np.testing.assert_array_equal(resumed.state.best_weights, full.state.best_weights)
