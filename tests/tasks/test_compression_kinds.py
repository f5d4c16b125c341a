"""Compression judges candidates by the task kind's headline metric: a lower RMSE ranks like a
higher accuracy, ``max_metric_drop`` is a drop from the uncompressed model in the metric's unit,
and a real search on a tiny regression model / autoencoder measures RMSE / AUROC."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from edgeintel.errors import BudgetError, ConfigError
from edgeintel.inference.compress import compress
from edgeintel.inference.measure import MeasureConfig, Measurement
from edgeintel.inference.recipe import make_recipe
from edgeintel.inference.search import Budget, Violation, run_candidates, select
from edgeintel.latency import LatencyStats
from edgeintel.models.train import TrainConfig, train_model
from edgeintel.tasks import make_task


def _m(value: float, p50: float, size: int, metric: str = "rmse", hib: bool = False) -> Measurement:
    lat = LatencyStats(p50, p50, p50, 10)
    return Measurement(1, size, size, 1, value, lat, lat, 1.0, 10, metric, hib)


class _Result:
    """What ``select`` reads of a CompressionResult: name, final and fp32 measurements."""

    def __init__(self, name: str, final: Measurement, baseline: Measurement) -> None:
        from edgeintel.inference.recipe import Recipe

        self.recipe, self.final, self.baseline = Recipe(name), final, baseline


def _rmse_results() -> list[_Result]:
    fp32 = _m(2.0, 10.0, 4000)
    return [
        _Result("fp32", fp32, fp32),
        _Result("int8", _m(2.3, 4.0, 1000), fp32),  # RMSE 0.3 worse
        _Result("pruned", _m(2.1, 6.0, 2000), fp32),  # RMSE 0.1 worse
    ]


def test_lower_rmse_is_better_and_the_drop_is_in_target_units() -> None:
    res = _rmse_results()
    assert res[1].final.drop_from(res[0].final) == pytest.approx(0.3)
    assert res[1].final.score == -2.3
    # best metric: the lowest RMSE (fp32), not the highest value
    assert select(res, Budget(), "metric").chosen.label == "fp32"  # type: ignore[union-attr,arg-type]
    # a latency budget of 7 ms leaves int8 and pruned; best RMSE among them: pruned
    sr = select(res, Budget(max_latency_ms=7.0), "metric")  # type: ignore[arg-type]
    assert sr.chosen is not None and sr.chosen.label == "pruned"
    assert sr.chosen.reason == "chosen: meets the budget with the best rmse"
    # the fastest within an RMSE drop of 0.2: int8 (drop 0.3) misses, pruned fits
    sr = select(res, Budget(max_metric_drop=0.2), "latency")  # type: ignore[arg-type]
    assert sr.chosen is not None and sr.chosen.label == "pruned"
    miss = next(c for c in sr.candidates if c.label == "int8")
    assert miss.reason == "misses rmse drop 0.3 > 0.2"
    assert select(res, Budget(max_metric_drop=0.5), "latency").chosen.label == "int8"  # type: ignore[union-attr,arg-type]
    with pytest.raises(BudgetError, match="closest is 'fp32'") as err:
        select(res, Budget(max_latency_ms=7.0, max_metric_drop=0.05), "metric")  # type: ignore[arg-type]
    reasons = {c.label: c.reason for c in err.value.search.candidates}
    assert reasons["pruned"] == "misses rmse drop 0.1 > 0.05"
    with pytest.raises(ConfigError, match=r"objective 'accuracy'.*rmse; use 'metric'"):
        select(res, Budget(), "accuracy")  # type: ignore[arg-type]


def test_accuracy_drop_and_budget_checks() -> None:
    fp32 = _m(0.90, 10.0, 4000, "accuracy", True)
    int8 = _m(0.885, 4.0, 1000, "accuracy", True)
    assert int8.drop_from(fp32) == pytest.approx(0.015)  # 1.5 points
    assert int8.accuracy == 0.885 and "accuracy" in int8.to_json()
    assert "rmse" in _m(1.0, 1.0, 1).to_json()
    with pytest.raises(AttributeError, match="metric is rmse, not accuracy"):
        _ = _m(1.0, 1.0, 1).accuracy
    assert Violation("rmse drop", 0.1, 0.0, "", "<=").excess == math.inf
    with pytest.raises(ConfigError, match="max_metric_drop"):
        Budget(max_metric_drop=-0.01)
    with pytest.raises(ConfigError, match="needs the uncompressed"):
        Budget(max_metric_drop=0.01).violations(int8)


def _regression_data(n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 2, 8)).astype(np.float32)
    return x, (x[:, 0].mean(1) * 3 - x[:, 1].mean(1)).astype(np.float32)


def test_a_regression_search_is_measured_by_rmse(tmp_path: object) -> None:
    x, y = _regression_data()
    kind = make_task("regression")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 1))
    train_model(model, x[:150], y[:150], TrainConfig(epochs=20, batch_size=32), task=kind)
    recipes = [
        make_recipe("fp32", []),
        make_recipe("int8-dynamic", ["quantize_dynamic"]),
        make_recipe("prune50", [("prune_structured", {"ratio": 0.5, "finetune_epochs": 1})]),
    ]
    results = run_candidates(
        model, recipes, (x[:150], y[:150]), eval_data=(x[150:], y[150:]),
        measure=MeasureConfig(runs=5, warmup=1), workdir=tmp_path, task=kind,
    )  # fmt: skip
    fp32 = results[0].final
    assert fp32.metric == "rmse" and set(fp32.metrics) == {"rmse", "mae", "r2"}
    pred = model(torch.from_numpy(x[150:])).detach().numpy().reshape(-1)
    assert fp32.metric_value == pytest.approx(np.sqrt(np.mean((pred - y[150:]) ** 2)), rel=1e-4)
    assert fp32.metric_value < 0.5 * np.std(y[150:])  # learned, not the mean
    assert results[1].ratios()["metric_drop"] == pytest.approx(
        results[1].final.metric_value - fp32.metric_value
    )
    assert results[0].artifact.extra["rmse"] == fp32.metric_value
    tight = select(results, Budget(max_metric_drop=0.0), "size")  # type: ignore[arg-type]
    assert tight.chosen is not None and tight.chosen.measurement.drop_from(fp32) <= 0.0


def test_an_autoencoder_compressed_with_distillation_keeps_its_auroc(tmp_path: object) -> None:
    rng = np.random.default_rng(1)
    basis = rng.normal(size=(2, 16))
    normal = (rng.normal(size=(160, 2)) @ basis + 0.05 * rng.normal(size=(160, 16))).astype(
        np.float32
    )
    odd = (rng.normal(size=(20, 16)) * 1.5).astype(np.float32)
    x_ev = np.concatenate([normal[120:], odd]).reshape(-1, 2, 8)
    y_ev = np.r_[np.zeros(40, np.int64), np.ones(20, np.int64)]
    kind = make_task("anomaly")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3), nn.Linear(3, 16))
    x_tr = normal[:120].reshape(-1, 2, 8)
    y_tr = np.zeros(120, np.int64)  # normal data only
    train_model(model, x_tr, y_tr, TrainConfig(epochs=30, batch_size=16, lr=1e-2), task=kind)
    res = compress(
        model, [("distill", {"student": "mlp", "width": 8, "epochs": 2, "min_steps": 40})],
        (x_tr, y_tr), eval_data=(x_ev, y_ev), measure=MeasureConfig(runs=5, warmup=1),
        workdir=tmp_path, task=kind,
    )  # fmt: skip
    assert res.baseline.metric == "auroc" and res.baseline.metric_value > 0.95
    # the student is another autoencoder: its output has the input's 16 values
    assert res.model is not None and res.model(torch.from_numpy(x_ev[:2])).shape == (2, 16)
    assert 0.0 <= res.final.metric_value <= 1.0 and "rmse" not in res.final.metrics
