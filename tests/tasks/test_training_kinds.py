"""Central and federated training with each task kind's loss on tiny synthetic data: a
regression model beats the mean baseline; an autoencoder trained on normal data only
separates anomalies (AUROC); vmap and loop local training agree for a regression loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgeintel.models import build_model
from edgeintel.models.train import TrainConfig, evaluate_task, train_model
from edgeintel.tasks import make_task
from edgeintel.training import ClientSpec, FederatedConfig, FederatedEngine
from edgeintel.training.client_train import LocalTrainer


def _regression(n: int = 480, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3, 8)).astype(np.float32)
    y = 2.0 * x[:, 0].mean(1) - x[:, 1].mean(1) + 0.05 * rng.normal(size=n)
    return x, y.astype(np.float32)


def _anomaly(n: int, anomalous: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Normal samples lie near a 2-d plane in 24-d; anomalies do not."""
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(99).normal(size=(2, 24))
    x = rng.normal(size=(n, 2)) @ basis + 0.05 * rng.normal(size=(n, 24))
    y = (rng.random(n) < anomalous).astype(np.int64)
    x[y == 1] = rng.normal(size=(int(y.sum()), 24)) * 1.5
    return x.reshape(n, 3, 8).astype(np.float32), y


def test_central_regression_beats_the_mean() -> None:
    x, y = _regression()
    kind = make_task("regression")
    model = build_model("mlp", (3, 8), kind.outputs(1, (3, 8)), width=8, seed=0)
    hist = train_model(
        model, x[:360], y[:360], TrainConfig(epochs=15, batch_size=32, lr=3e-3), seed=0,
        x_val=x[360:], y_val=y[360:], task=kind,
    )  # fmt: skip
    assert hist[-1].train_accuracy is None and hist[-1].val_accuracy is None
    assert "val_metric" in hist[-1].to_json() and hist[-1].loss < hist[0].loss
    rmse = evaluate_task(model, x[360:], y[360:], kind)["rmse"]
    assert rmse == pytest.approx(hist[-1].val_metric)
    _, base = kind.best_baseline(y[:360], y[360:])
    assert rmse < 0.5 * base


def test_classification_epoch_records_keep_their_json() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 3, 8)).astype(np.float32), np.arange(40) % 2
    hist = train_model(build_model("mlp", (3, 8), 2, width=4, seed=0), x, y,
                       TrainConfig(epochs=1), x_val=x, y_val=y)  # fmt: skip
    assert set(hist[0].to_json()) == {"epoch", "loss", "train_accuracy", "val_accuracy"}


def test_federated_regression_beats_the_mean() -> None:
    x, y = _regression()
    kind = make_task("regression")
    parts = np.array_split(np.arange(360), 6)
    cfg = FederatedConfig(rounds=12, local_steps=5, batch_size=16, lr=0.05, seed=0)
    eng = FederatedEngine(
        build_model("mlp", (3, 8), 1, width=8, seed=0), x[:360], y[:360], parts,
        [ClientSpec(f"d{i}", "cloud") for i in range(6)], x[360:], y[360:], cfg, task=kind,
    )  # fmt: skip
    eng.run()
    rmse = eng.state.history[-1].accuracy  # the kind's headline: RMSE
    _, base = kind.best_baseline(y[:360], y[360:])
    assert rmse is not None and rmse < 0.6 * base
    assert eng.state.history[-1].loss == pytest.approx(rmse**2, rel=1e-4)  # MSE loss


def test_federated_autoencoder_on_normal_data_detects_anomalies() -> None:
    x_tr, y_tr = _anomaly(400, 0.0, seed=1)  # devices hold normal data only
    x_te, y_te = _anomaly(300, 0.2, seed=2)
    kind = make_task("anomaly")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(24, 4), nn.Linear(4, 24))
    parts = np.array_split(np.arange(400), 5)
    cfg = FederatedConfig(rounds=15, local_steps=5, batch_size=16, lr=0.05, seed=0)
    eng = FederatedEngine(
        model, x_tr, y_tr, parts, [ClientSpec(f"d{i}", "cloud") for i in range(5)],
        x_te, y_te, cfg, task=kind,
    )  # fmt: skip
    eng.run()
    assert eng.state.history[-1].accuracy is not None
    assert eng.state.history[-1].accuracy > 0.95  # AUROC
    assert eng.state.history[0].accuracy < eng.state.history[-1].accuracy


def test_vmap_and_loop_agree_on_a_regression_loss() -> None:
    x, y = _regression(64)
    kind = make_task("regression")
    model = build_model("mlp", (3, 8), 1, width=4, seed=0)
    start = np.concatenate([p.detach().reshape(-1).numpy() for p in model.state_dict().values()])
    batches = np.arange(64).reshape(1, 4, 16)
    mask = np.ones((1, 4), np.float32)
    out = [
        LocalTrainer(model, x, y, lr=0.1, mode=mode, task=kind).train(start[None], batches, mask)
        for mode in ("vmap", "loop")
    ]
    np.testing.assert_allclose(out[0], out[1], rtol=1e-4, atol=1e-5)
    assert not np.allclose(out[0][0], start)


def test_edge_vs_central_in_the_kinds_metric_by_hand() -> None:
    from edgeintel.pipeline.stages.edge_train_stage import compare_metric

    kind = make_task("regression")
    y_tr, y_te = np.array([0.0, 2.0]), np.array([1.0, 3.0])
    # mean baseline predicts 1.0: errors 0, 2 -> RMSE sqrt(2); last value predicts 2.0 (last
    # training target), then 1.0: errors 1, 2 -> RMSE sqrt(2.5)
    out = compare_metric(kind, 1.5, 1.0, y_tr, y_te)
    assert (out["baseline"], out["baseline_rmse"]) == ("mean", pytest.approx(np.sqrt(2)))
    assert out["central_rmse"] == 1.0 and out["gap_to_central"] == pytest.approx(0.5)
    assert out["warnings"] == [
        "edge-trained RMSE 1.5 does not beat the best trivial baseline (mean, 1.414): "
        "edge training learned little"
    ]
    assert compare_metric(kind, 1.2, 1.0, y_tr, y_te)["warnings"] == []
