"""Each task kind's loss, metrics, baselines, agreement and threshold rule against values
computed by hand, and the scenario's ``task`` section checks."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from edgeintel.errors import ConfigError
from edgeintel.scenario import parse_scenario
from edgeintel.tasks import TASKS, make_task
from edgeintel.tasks import metrics as m

from ..conftest import tiny_scenario_dict

# --------------------------------------------------------------------------- metrics


def test_regression_metrics_by_hand() -> None:
    y, p = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 3.0, 2.0, 6.0])
    # errors 0, 1, -1, 2: MAE 4/4, MSE 6/4, SS_tot = 2.25+0.25+0.25+2.25 = 5
    assert m.mae(y, p) == pytest.approx(1.0)
    assert m.rmse(y, p) == pytest.approx(math.sqrt(1.5))
    assert m.r2(y, p) == pytest.approx(1 - 6 / 5)
    assert m.r2(y, y) == 1.0 and m.r2(np.full(3, 2.0), np.full(3, 2.0)) == 0.0
    with pytest.raises(ValueError, match="one shape"):
        m.mae(y, p[:3])


def test_accuracy_and_majority_by_hand() -> None:
    assert m.accuracy(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2])) == 0.75
    assert m.majority_class(np.array([2, 1, 2, 1, 0])) == 1  # tie 1/2: the smaller label


def test_auroc_by_hand() -> None:
    labels = np.array([0, 0, 1, 1])
    assert m.auroc(labels, np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)  # 3 of 4 pairs
    assert m.auroc(labels, np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert m.auroc(labels, np.array([0.5, 0.5, 0.5, 0.5])) == 0.5  # ties count half
    # one tie across classes: pairs (n,a) = (0.1,0.4)+ (0.1,0.9)+ (0.4,0.4)½ (0.4,0.9)+
    assert m.auroc(labels, np.array([0.1, 0.4, 0.4, 0.9])) == pytest.approx(3.5 / 4)
    with pytest.raises(ValueError, match="both"):
        m.auroc(np.zeros(3), np.arange(3.0))


def test_threshold_at_false_alarm_rate_by_hand() -> None:
    s = np.array([5.0, 1.0, 4.0, 2.0, 3.0, 9.0, 8.0, 7.0, 6.0, 10.0])
    assert m.threshold_at_false_alarm_rate(s, 0.0) == 10.0  # nothing above the largest
    assert m.threshold_at_false_alarm_rate(s, 0.1) == 9.0  # one of ten may be flagged
    assert m.threshold_at_false_alarm_rate(s, 0.25) == 8.0  # floor(2.5) = 2
    for rate in (0.0, 0.1, 0.25, 0.49):
        t = m.threshold_at_false_alarm_rate(s, rate)
        assert (s > t).sum() <= math.floor(rate * len(s))


def test_precision_recall_f1_by_hand() -> None:
    labels = np.array([1, 1, 1, 0, 0, 0])
    flagged = np.array([1, 1, 0, 1, 0, 0])  # tp 2, fp 1, fn 1
    p, r, f1 = m.precision_recall_f1(labels, flagged)
    assert (p, r) == pytest.approx((2 / 3, 2 / 3)) and f1 == pytest.approx(2 / 3)
    assert m.precision_recall_f1(labels, np.zeros(6)) == (0.0, 0.0, 0.0)


def test_last_value_by_hand() -> None:
    assert m.last_value(np.array([3.0, 5.0, 4.0]), first=2.0).tolist() == [2.0, 3.0, 5.0]


# --------------------------------------------------------------------------- kinds


def test_classification_kind_is_todays_behaviour() -> None:
    k = make_task("classification")
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 0])
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(1))) / 2
    assert float(k.loss(logits, k.target(torch.zeros(2, 3), y))) == pytest.approx(expected, 1e-6)
    pred = k.predict(logits.numpy(), np.zeros((2, 3)))
    assert pred.tolist() == [0, 1] and k.evaluate(pred, y.numpy()) == {"accuracy": 0.5}
    assert k.baselines(np.array([1, 1, 0]), np.array([1, 0, 1, 1])) == {
        "majority class": {"accuracy": 0.75}
    }
    assert k.agree(np.array([1, 2, 3]), np.array([1, 0, 3])).tolist() == [True, False, True]
    assert k.better(0.9, 0.8) and k.drop(0.9, 0.85) == pytest.approx(0.05)
    assert k.early_exit and k.outputs(7, (1, 8, 8)) == 7


def test_regression_kind_by_hand() -> None:
    k = make_task("regression", tolerance=0.5)
    out = torch.tensor([[1.0], [3.0]])
    y = torch.tensor([2.0, 3.0])
    assert float(k.loss(out, k.target(torch.zeros(2, 4), y))) == pytest.approx(0.5)  # (1+0)/2
    pred = k.predict(out.numpy(), np.zeros((2, 4)))
    assert pred.tolist() == [1.0, 3.0]
    figures = k.evaluate(pred, y.numpy())
    assert figures["rmse"] == pytest.approx(math.sqrt(0.5)) and figures["mae"] == 0.5
    y_train, y_test = np.array([1.0, 2.0, 3.0]), np.array([4.0, 4.0, 6.0])
    base = k.baselines(y_train, y_test)
    # mean 2: errors 2, 2, 4 -> MAE 8/3, RMSE sqrt(24/3); last value 3, 4, 4: errors 1, 0, 2
    assert base["mean"]["mae"] == pytest.approx(8 / 3)
    assert base["mean"]["rmse"] == pytest.approx(math.sqrt(8))
    assert base["last value"]["mae"] == pytest.approx(1.0)
    assert base["last value"]["rmse"] == pytest.approx(math.sqrt(5 / 3))
    assert k.best_baseline(y_train, y_test) == ("last value", pytest.approx(math.sqrt(5 / 3)))
    assert k.agree(np.array([1.0, 2.0]), np.array([1.5, 2.6])).tolist() == [True, False]
    assert not k.better(1.0, 0.5) and k.drop(1.0, 1.2) == pytest.approx(0.2)
    assert not k.early_exit and k.outputs(5, (3, 32)) == 1
    fitted = make_task("regression").fit(np.zeros(4), np.array([0.0, 2.0, 0.0, 2.0]))
    assert fitted.tolerance == pytest.approx(0.1)  # a tenth of the validation std (1.0)


def test_anomaly_kind_by_hand() -> None:
    k = make_task("anomaly", false_alarm_rate=0.25)
    x = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    recon = torch.tensor([[1.0, 3.0], [0.0, 1.0]])  # squared errors 0,4 and 0,1
    assert float(k.loss(recon, k.target(x, torch.tensor([0, 1])))) == pytest.approx(5 / 4)
    scores = k.predict(recon.numpy(), x.numpy())
    assert scores.tolist() == [2.0, 0.5]
    assert k.outputs(2, (3, 32)) == 96 and not k.early_exit
    # validation: the threshold uses only the normal samples (label 0), whatever the anomalies score
    val_scores = np.array([1.0, 2.0, 3.0, 4.0, 100.0, 200.0])
    val_y = np.array([0, 0, 0, 0, 1, 1])
    fitted = k.fit(val_scores, val_y)
    assert fitted.threshold == 3.0  # floor(0.25 * 4) = 1 of 4 normals may be above
    test_scores, test_y = np.array([0.5, 2.5, 5.0, 6.0]), np.array([0, 0, 1, 0])
    figures = fitted.evaluate(test_scores, test_y)
    # flagged: 5.0, 6.0 -> tp 1, fp 1, fn 0
    assert figures["precision"] == 0.5 and figures["recall"] == 1.0
    assert figures["f1"] == pytest.approx(2 / 3) and figures["false_alarm_rate"] == pytest.approx(
        1 / 3
    )
    assert figures["auroc"] == pytest.approx(2 / 3)  # 5.0 beats 0.5 and 2.5, not 6.0
    base = fitted.baselines(val_y, test_y)["always normal"]
    assert base["auroc"] == 0.5 and base["f1"] == 0.0 and base["false_alarm_rate"] == 0.0
    assert fitted.agree(np.array([1.0, 5.0, 5.0]), np.array([2.9, 2.0, 9.0])).tolist() == [
        True,
        False,
        True,
    ]
    assert k.evaluate(test_scores, test_y) == {"auroc": pytest.approx(2 / 3)}  # no threshold yet
    assert k.evaluate(test_scores[:2], test_y[:2]) == {}  # no anomaly: AUROC undefined
    with pytest.raises(ValueError, match="validation first"):
        k.agree(test_scores, test_scores)


def test_threshold_never_sees_test_data() -> None:
    """The fitted threshold is a function of the validation scores alone."""
    k = make_task("anomaly", false_alarm_rate=0.1)
    rng = np.random.default_rng(0)
    val, val_y = rng.normal(size=200), np.zeros(200, dtype=int)
    t1 = k.fit(val, val_y).threshold
    t2 = k.fit(val, val_y).threshold  # same validation data, any test set
    assert t1 == t2 and (val > t1).mean() <= 0.1
    assert k.fit(val + 1.0, val_y).threshold == pytest.approx(t1 + 1.0)


# --------------------------------------------------------------------------- scenario


def _parse(task: dict[str, Any], **settings: Any) -> Any:
    raw = tiny_scenario_dict()
    raw["task"].update(task)
    raw["settings"].update(settings)
    return parse_scenario(raw)


def test_metric_drop_budget_in_the_kind_unit() -> None:
    # an RMSE drop is in target units: any size is a valid budget
    sc = _parse({"kind": "regression"}, inference={"compress": {"budget": {"max_metric_drop": 7}}})
    assert sc.settings.inference.compress.budget.max_metric_drop == 7
    assert sc.settings.inference.compress.objective == "metric"


def test_task_kind_in_the_scenario() -> None:
    assert _parse({}).task.kind == "classification"
    sc = _parse({"kind": "regression", "tolerance": 0.2})
    assert sc.task.task_kind() == make_task("regression", tolerance=0.2)
    assert _parse({"kind": "anomaly"}).task.task_kind().false_alarm_rate == 0.01
    assert set(TASKS.names()) >= {"classification", "regression", "anomaly"}


@pytest.mark.parametrize(
    ("task", "settings", "message"),
    [
        ({"kind": "nope"}, {}, r"task\.kind: unknown task kind 'nope'; expected one of: anomaly"),
        ({"kind": "anomaly", "tolerance": 1.0}, {}, r"task\.tolerance: an option of another"),
        ({"false_alarm_rate": 0.1}, {}, r"task\.false_alarm_rate: an option of another"),
        (
            {"kind": "regression"},
            {"offloading": {"early_exit": {}}},
            r"settings\.offloading\.early_exit: early exit has no rule for the regression",
        ),
        (
            {"kind": "anomaly"},
            {"inference": {"compress": {"budget": {"min_accuracy": 0.9}}}},
            r"compress\.budget\.min_accuracy: the anomaly task kind has no accuracy",
        ),
        (
            {"kind": "regression"},
            {"inference": {"compress": {"objective": "accuracy"}}},
            r"compress\.objective: the regression task kind has no accuracy .*use 'metric'",
        ),
        (
            {"kind": "anomaly"},
            {"inference": {"compress": {"budgets": {"phone": {"max_metric_drop": 1.5}}}}},
            r"budgets\.phone\.max_metric_drop: the anomaly task kind's auroc lies in \[0, 1\]",
        ),
        (
            {"kind": "anomaly"},
            {"training": {"central_tolerance": 2.0}},
            r"settings\.training\.central_tolerance: the anomaly task kind's auroc lies in",
        ),
        (
            {},
            {"inference": {"compress": {"budget": {"max_metric_drop": -0.1}}}},
            r"compress\.budget\.max_metric_drop",
        ),
    ],
)
def test_bad_task_settings_are_one_line(task: Any, settings: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        _parse(task, **settings)
    assert "\n" not in str(err.value)
