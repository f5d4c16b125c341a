"""Figures of a model's held-out predictions, per task kind: how each kind's outputs are shown.

``TASK_PLOTS`` maps a kind's name (``edgeintel.tasks.TASKS``) to a maker
``(kind, pred, y, classes) -> list[TaskFigure]`` that draws the kind's test predictions
(``TaskKind.predict``: labels, values, anomaly scores) against the true targets:

* ``classification``: the confusion matrix;
* ``regression``: predicted vs true (with the identity line) and the residuals;
* ``anomaly``: the ROC and precision-recall curves with the operating point of the threshold
  chosen on validation, and the scores of normal and anomalous samples around it.

A user's kind registers its own maker; a kind without one gets no figures. The curves come
from ``edgeintel.tasks.metrics`` (pure numpy), so what is drawn is what the metrics report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeintel.registry import Registry
from edgeintel.report import plots
from edgeintel.tasks import TaskKind
from edgeintel.tasks import metrics as m
from edgeintel.tasks.kinds import Anomaly

__all__ = ["TASK_PLOTS", "TaskFigure", "task_figures"]


@dataclass(frozen=True)
class TaskFigure:
    """One figure for the report: its title, the matplotlib figure and a caption."""

    title: str
    figure: Any
    caption: str


TaskPlotter = Callable[[TaskKind, np.ndarray, np.ndarray, Sequence[str]], list[TaskFigure]]
TASK_PLOTS: Registry[TaskPlotter] = Registry("task kind plot")


def task_figures(
    kind: TaskKind, pred: np.ndarray, y: np.ndarray, classes: Sequence[str] = ()
) -> list[TaskFigure]:
    """The figures of ``kind`` for test predictions ``pred`` against ``y`` ([] for a kind
    that registered no maker)."""
    if kind.name not in TASK_PLOTS:
        return []
    return TASK_PLOTS.get(kind.name)(kind, np.asarray(pred), np.asarray(y), classes)


def _axes(figsize: tuple[float, float] = (5.2, 4.0), ncols: int = 1) -> tuple[Any, Any]:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, ncols, figsize=figsize)
    for a in np.atleast_1d(ax):
        a.spines[["top", "right"]].set_visible(False)
        a.grid(alpha=0.25)
    return fig, ax


@TASK_PLOTS.register("classification")
def _classification(
    kind: TaskKind, pred: np.ndarray, y: np.ndarray, classes: Sequence[str]
) -> list[TaskFigure]:
    n = max(len(classes), int(max(pred.max(initial=0), y.max(initial=0))) + 1)
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (y.astype(np.int64), pred.astype(np.int64)), 1)
    names = list(classes) if len(classes) == n else [str(i) for i in range(n)]
    return [
        TaskFigure(
            "Confusion matrix",
            plots.confusion_matrix(cm, names),
            f"Exported model on the {len(y)} held-out test samples; rows are the true class.",
        )
    ]


@TASK_PLOTS.register("regression")
def _regression(
    kind: TaskKind, pred: np.ndarray, y: np.ndarray, classes: Sequence[str]
) -> list[TaskFigure]:
    t = np.asarray(y, np.float64).reshape(-1)
    p = np.asarray(pred, np.float64).reshape(-1)
    rmse, r2 = m.rmse(t, p), m.r2(t, p)
    fig, ax = _axes()
    ax.scatter(t, p, s=8, alpha=0.5, color="tab:blue", edgecolors="none")
    lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
    ax.plot([lo, hi], [lo, hi], color="tab:red", lw=1.0, ls="--", label="predicted = true")
    ax.set_xlabel("true value")
    ax.set_ylabel("predicted value")
    ax.legend(fontsize=8, frameon=False)
    scatter = TaskFigure(
        "Predicted vs true",
        fig,
        f"Exported model on the {len(t)} held-out test targets: RMSE {rmse:.4g}, R^2 {r2:.3f}; "
        "points on the dashed line are exact.",
    )
    res = p - t
    fig2, (a1, a2) = _axes((8.4, 3.6), ncols=2)
    a1.scatter(p, res, s=8, alpha=0.5, color="tab:blue", edgecolors="none")
    a1.axhline(0.0, color="tab:red", lw=1.0, ls="--")
    a1.set_xlabel("predicted value")
    a1.set_ylabel("residual (predicted - true)")
    a2.hist(res, bins=min(40, max(5, len(res) // 10)), color="tab:blue", alpha=0.7)
    a2.axvline(0.0, color="tab:red", lw=1.0, ls="--")
    a2.set_xlabel("residual (predicted - true)")
    a2.set_ylabel("test targets")
    fig2.tight_layout()
    residuals = TaskFigure(
        "Residuals",
        fig2,
        f"Residuals of the held-out predictions: mean {res.mean():+.4g} (bias), MAE "
        f"{np.abs(res).mean():.4g}; a pattern against the predicted value means the model "
        "misses structure.",
    )
    return [scatter, residuals]


@TASK_PLOTS.register("anomaly")
def _anomaly(
    kind: TaskKind, pred: np.ndarray, y: np.ndarray, classes: Sequence[str]
) -> list[TaskFigure]:
    labels = np.asarray(y).reshape(-1) != 0
    scores = np.asarray(pred, np.float64).reshape(-1)
    if labels.all() or not labels.any():
        return []  # no curve without both normal and anomalous test samples
    threshold = kind.threshold if isinstance(kind, Anomaly) else None
    point = None
    if isinstance(kind, Anomaly) and threshold is not None:
        point = m.operating_point(labels, kind.flagged(scores))
    fpr, tpr = m.roc_curve(labels, scores)
    auroc = m.auroc(labels, scores)
    fig, ax = _axes()
    ax.plot(fpr, tpr, color="tab:blue", lw=1.5, label=f"ROC (AUROC {auroc:.3f})")
    ax.plot([0, 1], [0, 1], color="tab:gray", lw=1.0, ls=":", label="chance")
    recall, precision = m.pr_curve(labels, scores)
    fig2, ax2 = _axes()
    ax2.plot(recall, precision, color="tab:blue", lw=1.5, label="precision-recall")
    prevalence = float(labels.mean())
    ax2.axhline(prevalence, color="tab:gray", lw=1.0, ls=":", label=f"prevalence {prevalence:.3f}")
    chosen = ""
    if point is not None:
        lab = f"threshold {threshold:.4g} (chosen on validation)"
        ax.scatter([point["fpr"]], [point["tpr"]], color="tab:red", zorder=5, label=lab)
        ax2.scatter([point["tpr"]], [point["precision"]], color="tab:red", zorder=5, label=lab)
        chosen = (
            f"; the red point is the threshold chosen on validation normal data: false-alarm "
            f"rate {point['fpr']:.3f}, recall {point['tpr']:.3f}, precision "
            f"{point['precision']:.3f} on test"
        )
    ax.set_xlabel("false-positive rate (false alarms)")
    ax.set_ylabel("true-positive rate (recall)")
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    ax2.set_xlabel("recall")
    ax2.set_ylabel("precision")
    ax2.set_ylim(0, 1.02)
    ax2.legend(fontsize=8, frameon=False, loc="lower left")
    n_bad = int(labels.sum())
    fig3, ax3 = _axes((6.4, 3.4))
    bins = np.histogram_bin_edges(scores, bins=min(40, max(5, len(scores) // 10)))
    ax3.hist(scores[~labels], bins=bins, alpha=0.6, color="tab:blue", label="normal")
    ax3.hist(scores[labels], bins=bins, alpha=0.6, color="tab:red", label="anomalous")
    if threshold is not None:
        ax3.axvline(threshold, color="black", lw=1.2, ls="--", label="threshold")
    ax3.set_xlabel("anomaly score")
    ax3.set_ylabel("test samples")
    ax3.legend(fontsize=8, frameon=False)
    where = f"{len(labels)} held-out test samples ({n_bad} anomalous)"
    return [
        TaskFigure(
            "ROC curve", fig, f"Anomaly scores of the exported model on the {where}{chosen}."
        ),
        TaskFigure("Precision-recall curve", fig2, f"The same scores on the {where}{chosen}."),
        TaskFigure(
            "Anomaly scores",
            fig3,
            f"Scores of normal and anomalous test samples; a sample above the dashed threshold "
            f"raises an alarm ({where}).",
        ),
    ]
