"""Per-kind evaluation figures: ROC / precision-recall curves by hand (their area is the AUROC,
the threshold's operating point sits on them), and each built-in kind's plots render."""

from __future__ import annotations

import numpy as np
import pytest

from edgeintel.report.task_plots import TASK_PLOTS, task_figures
from edgeintel.tasks import TASKS, make_task
from edgeintel.tasks import metrics as m


def test_roc_and_pr_curves_by_hand() -> None:
    labels = np.array([1, 0, 1, 0, 0])
    scores = np.array([0.9, 0.8, 0.8, 0.3, 0.1])  # a tie at 0.8 between an anomaly and not
    fpr, tpr = m.roc_curve(labels, scores)
    # flag >= 0.9: 1 TP; >= 0.8: 2 TP 1 FP; >= 0.3: 2 FP; >= 0.1: 3 FP
    np.testing.assert_allclose(fpr, [0, 0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 1, 1, 1])
    assert np.trapezoid(tpr, fpr) == pytest.approx(m.auroc(labels, scores))  # 5/6
    recall, precision = m.pr_curve(labels, scores)
    np.testing.assert_allclose(recall, [0.5, 1, 1, 1])
    np.testing.assert_allclose(precision, [1, 2 / 3, 0.5, 0.4])
    point = m.operating_point(labels, scores > 0.5)  # the alarms of threshold 0.5
    assert point == {"fpr": pytest.approx(1 / 3), "tpr": 1.0, "precision": pytest.approx(2 / 3)}
    with pytest.raises(ValueError, match="both normal and anomalous"):
        m.roc_curve(np.zeros(3), scores[:3])


def test_every_built_in_kind_draws_its_figures() -> None:
    rng = np.random.default_rng(0)
    y_cls = np.arange(40) % 3
    cases = {
        "classification": (make_task("classification"), y_cls, y_cls),
        "regression": (make_task("regression"), rng.normal(size=40), rng.normal(size=40)),
        "anomaly": (
            make_task("anomaly", threshold=0.5),
            rng.random(40),
            (np.arange(40) % 4 == 0).astype(np.int64),
        ),
    }
    titles = {
        "classification": ["Confusion matrix"],
        "regression": ["Predicted vs true", "Residuals"],
        "anomaly": ["ROC curve", "Precision-recall curve", "Anomaly scores"],
    }
    assert set(TASK_PLOTS.names()) == set(TASKS.names()) == set(cases)
    for name, (kind, pred, y) in cases.items():
        figs = task_figures(kind, pred, y, ["a", "b", "c"])
        assert [f.title for f in figs] == titles[name]
        assert all(f.caption and f.figure.axes for f in figs)
    (roc, *_) = task_figures(*cases["anomaly"])
    assert "threshold chosen on validation" in roc.caption and "recall" in roc.caption


def test_the_run_summary_quotes_the_kinds_metric() -> None:
    from edgeintel.cli.common import summary_rows

    ev = {"metric": "rmse", "rmse_onnx": 0.1119, "latency_ms": {"p50_ms": 1.0, "p95_ms": 2.0},
          "per_profile": {}}  # fmt: skip
    rows = dict(summary_rows({"evaluation": ev, "model": {"trained_by": "federated",
                "family": "mlp", "params": 1, "onnx": {"bytes": 1024}}}))  # fmt: skip
    assert rows["exported model rmse (federated)"] == "0.1119"
