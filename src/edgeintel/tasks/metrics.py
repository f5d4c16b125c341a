"""Metrics, baselines and the anomaly threshold rule of the task kinds: pure numpy functions.

Every function takes plain arrays and returns plain floats (or arrays), so tests check them
against hand-computed values and components call them without torch. Units: a regression
metric is in the target's unit (``r2`` is unitless); classification and anomaly metrics are
fractions in [0, 1].
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "accuracy",
    "auroc",
    "last_value",
    "mae",
    "majority_class",
    "operating_point",
    "pr_curve",
    "precision_recall_f1",
    "r2",
    "rmse",
    "roc_curve",
    "threshold_at_false_alarm_rate",
]


def _pair(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true).reshape(len(y_true), -1)
    p = np.asarray(y_pred).reshape(len(y_pred), -1)
    if t.shape != p.shape or len(t) == 0:
        raise ValueError(f"expected two non-empty arrays of one shape, got {t.shape}, {p.shape}")
    return t.astype(np.float64), p.astype(np.float64)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of predicted labels equal to the true ones."""
    t, p = _pair(y_true, y_pred)
    return float((t == p).all(axis=1).mean())


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean absolute error (target unit)."""
    t, p = _pair(y_true, y_pred)
    return float(np.abs(t - p).mean())


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean squared error (target unit)."""
    t, p = _pair(y_true, y_pred)
    return float(np.sqrt(((t - p) ** 2).mean()))


def r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination 1 - SS_res / SS_tot (0 for the test mean, 1 perfect);
    0.0 when the targets are constant and predicted exactly, -inf when not."""
    t, p = _pair(y_true, y_pred)
    ss_res = float(((t - p) ** 2).sum())
    ss_tot = float(((t - t.mean(axis=0)) ** 2).sum())
    if ss_tot == 0.0:
        return 0.0 if ss_res == 0.0 else float("-inf")
    return 1.0 - ss_res / ss_tot


def majority_class(y_train: np.ndarray) -> int:
    """The most frequent training label (the smallest on a tie)."""
    values, counts = np.unique(np.asarray(y_train), return_counts=True)
    return int(values[np.argmax(counts)])


def last_value(y: np.ndarray, first: float) -> np.ndarray:
    """The last-value (persistence) forecast of a sequence: each interval predicted by the
    previous interval's true value, the first by ``first`` (the last training value)."""
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    return np.concatenate([[first], y[:-1]]) if len(y) else y


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a random anomaly (label 1) scores
    higher than a random normal sample (label 0), ties counted half (Mann-Whitney U)."""
    lab = np.asarray(labels).reshape(-1).astype(bool)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    n_pos, n_neg = int(lab.sum()), int((~lab).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUROC needs both normal (0) and anomalous (1) samples")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    i = 0
    while i < len(s):  # average rank over ties (1-based)
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    u = ranks[lab].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def threshold_at_false_alarm_rate(normal_scores: np.ndarray, rate: float) -> float:
    """The smallest threshold among ``normal_scores`` (validation, normal data only) that
    flags at most ``floor(rate * n)`` of them (a sample is flagged when its score is
    strictly above the threshold): the ``n - 1 - floor(rate * n)``-th smallest score."""
    s = np.sort(np.asarray(normal_scores, dtype=np.float64).reshape(-1))
    if len(s) == 0:
        raise ValueError("no validation scores of normal data to choose a threshold on")
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"false-alarm rate must be in [0, 1), got {rate}")
    allowed = int(np.floor(rate * len(s)))
    return float(s[len(s) - 1 - allowed])


def precision_recall_f1(labels: np.ndarray, flagged: np.ndarray) -> tuple[float, float, float]:
    """(precision, recall, F1) of ``flagged`` against ``labels`` (1 = anomaly); a ratio with
    a zero denominator is 0.0."""
    lab = np.asarray(labels).reshape(-1).astype(bool)
    flg = np.asarray(flagged).reshape(-1).astype(bool)
    tp = int((lab & flg).sum())
    precision = tp / int(flg.sum()) if flg.any() else 0.0
    recall = tp / int(lab.sum()) if lab.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return float(precision), float(recall), float(f1)


def _ranked(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true positives, false positives, score) when flagging every score >= each distinct
    score, from the highest down (one row per distinct score)."""
    lab = np.asarray(labels).reshape(-1).astype(bool)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(s) != len(lab) or not lab.any() or lab.all():
        raise ValueError("a curve needs one score per label and both normal and anomalous ones")
    order = np.argsort(-s, kind="mergesort")
    s, lab = s[order], lab[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last row of each distinct score
    return np.cumsum(lab)[last], np.cumsum(~lab)[last], s[last]


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rates, true-positive rates) of flagging the scores at or above each
    distinct score, from (0, 0) to (1, 1); its trapezoid area is ``auroc``."""
    tp, fp, _ = _ranked(labels, scores)
    return np.r_[0.0, fp / fp[-1]], np.r_[0.0, tp / tp[-1]]


def pr_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) of flagging the scores at or above each distinct score, from the
    highest score down."""
    tp, fp, _ = _ranked(labels, scores)
    return tp / tp[-1], tp / (tp + fp)


def operating_point(labels: np.ndarray, flagged: np.ndarray) -> dict[str, float]:
    """Where a detector's alarms sit on the curves: false-positive rate, true-positive rate
    (= recall) and precision (0.0 with no alarm)."""
    lab = np.asarray(labels).reshape(-1).astype(bool)
    flg = np.asarray(flagged).reshape(-1).astype(bool)
    precision, recall, _ = precision_recall_f1(lab, flg)
    fpr = float(flg[~lab].mean()) if (~lab).any() else 0.0
    return {"fpr": fpr, "tpr": recall, "precision": precision}
