"""The built-in task kinds: classification, regression and anomaly detection."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from edgeintel.tasks import TASKS, TaskKind
from edgeintel.tasks import metrics as m

if TYPE_CHECKING:
    import torch

__all__ = ["Anomaly", "Classification", "Regression"]


def bool_rows(eq: np.ndarray) -> np.ndarray:
    """Per sample (first axis): are all of its entries true?"""
    return np.asarray(eq.reshape(len(eq), -1).all(axis=1))


@TASKS.register("classification")
@dataclass(frozen=True)
class Classification(TaskKind):
    """Labels in ``0..C-1``: cross-entropy on logits; accuracy; majority-class baseline;
    two predictions agree when their labels are equal."""

    name: ClassVar[str] = "classification"
    metric: ClassVar[str] = "accuracy"
    higher_is_better: ClassVar[bool] = True
    early_exit: ClassVar[bool] = True  # the softmax confidence rule

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        return F.cross_entropy(output, target)

    def soft_loss(
        self, student: torch.Tensor, teacher: torch.Tensor, temperature: float
    ) -> torch.Tensor:
        """Hinton's soft-label KL of the temperature-softened logits, scaled by T^2."""
        import torch.nn.functional as F

        t = temperature
        soft = F.kl_div(
            F.log_softmax(student / t, dim=1),
            F.log_softmax(teacher / t, dim=1),
            reduction="batchmean",
            log_target=True,
        )
        return t * t * soft

    def predict(self, output: np.ndarray, x: np.ndarray) -> np.ndarray:
        return np.asarray(output).argmax(axis=-1)

    def evaluate(self, pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
        return {"accuracy": m.accuracy(y, pred)}

    def baselines(self, y_train: np.ndarray, y_test: np.ndarray) -> dict[str, dict[str, float]]:
        major = np.full(len(y_test), m.majority_class(y_train))
        return {"majority class": self.evaluate(major, y_test)}

    def agree(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return bool_rows(np.asarray(a) == np.asarray(b))

    def record(self, pred: Any) -> dict[str, Any]:
        return {"label": int(pred)}


@TASKS.register("regression")
@dataclass(frozen=True)
class Regression(TaskKind):
    """Real-valued targets: mean squared error loss; RMSE (headline), MAE and R^2; mean
    and last-value (persistence) baselines; two predictions agree when they differ by at
    most ``tolerance`` (target unit; by default a tenth of the validation targets'
    standard deviation, set by ``fit``)."""

    name: ClassVar[str] = "regression"
    metric: ClassVar[str] = "rmse"
    metric_label: ClassVar[str] = "RMSE"
    higher_is_better: ClassVar[bool] = False
    label_dtype: ClassVar[type[np.generic]] = np.float32
    metric_range: ClassVar[tuple[float, float] | None] = None  # RMSE, in target units

    tolerance: float | None = None

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        return F.mse_loss(output.reshape(target.shape), target)

    def outputs(self, num_classes: int, input_shape: tuple[int, ...]) -> int:
        return 1

    def predict(self, output: np.ndarray, x: np.ndarray) -> np.ndarray:
        out = np.asarray(output, dtype=np.float64)
        return out.reshape(len(out)) if out.ndim == 2 and out.shape[1] == 1 else out

    def fit(self, val_pred: np.ndarray, val_y: np.ndarray) -> Regression:
        if self.tolerance is not None:
            return self
        return replace(self, tolerance=0.1 * float(np.std(np.asarray(val_y, dtype=np.float64))))

    def evaluate(self, pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
        return {"rmse": m.rmse(y, pred), "mae": m.mae(y, pred), "r2": m.r2(y, pred)}

    def baselines(self, y_train: np.ndarray, y_test: np.ndarray) -> dict[str, dict[str, float]]:
        y_tr = np.asarray(y_train, dtype=np.float64)
        mean = np.broadcast_to(y_tr.mean(axis=0), np.shape(y_test))
        out = {"mean": self.evaluate(mean, y_test)}
        if np.ndim(y_test) == 1:  # one target per interval, in time order
            out["last value"] = self.evaluate(m.last_value(y_test, float(y_tr[-1])), y_test)
        return out

    def agree(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if self.tolerance is None:
            raise ValueError("regression agreement needs a tolerance: set task.tolerance or fit")
        diff = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
        return diff.reshape(len(diff), -1).max(axis=1) <= self.tolerance

    def record(self, pred: Any) -> dict[str, Any]:
        return {"value": np.asarray(pred, np.float64).tolist()}


@TASKS.register("anomaly")
@dataclass(frozen=True)
class Anomaly(TaskKind):
    """Anomaly detection by reconstruction: the model is an autoencoder trained on normal
    data only (its output has the input's size, the loss is the reconstruction MSE); a
    sample's score is its reconstruction error; the threshold is chosen on validation normal
    data so that at most ``false_alarm_rate`` of them are flagged. Labels (1 = anomaly) are
    used only for evaluation and for picking the normal samples: AUROC (headline),
    precision, recall and F1 at the threshold; the always-normal detector is the baseline;
    two predictions agree when they fall on the same side of the threshold."""

    name: ClassVar[str] = "anomaly"
    metric: ClassVar[str] = "auroc"
    metric_label: ClassVar[str] = "AUROC"
    higher_is_better: ClassVar[bool] = True
    needs_input: ClassVar[bool] = True  # the score compares the output with the input

    false_alarm_rate: float = 0.01
    threshold: float | None = None

    def target(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        return F.mse_loss(output.reshape(target.shape), target)

    def outputs(self, num_classes: int, input_shape: tuple[int, ...]) -> int:
        return int(np.prod(input_shape))

    def predict(self, output: np.ndarray, x: np.ndarray) -> np.ndarray:
        err = np.asarray(output, np.float64).reshape(len(x), -1) - np.asarray(x).reshape(len(x), -1)
        return (err**2).mean(axis=1)

    def fit(self, val_pred: np.ndarray, val_y: np.ndarray) -> Anomaly:
        normal = np.asarray(val_pred)[np.asarray(val_y).reshape(-1) == 0]
        t = m.threshold_at_false_alarm_rate(normal, self.false_alarm_rate)
        return replace(self, threshold=t)

    def flagged(self, scores: np.ndarray) -> np.ndarray:
        """Which scores are alarms (strictly above the fitted threshold)."""
        if self.threshold is None:
            raise ValueError("the anomaly threshold is chosen on validation first (fit)")
        return np.asarray(scores, np.float64) > self.threshold

    def evaluate(self, pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """AUROC where both normal and anomalous samples are present; precision, recall, F1
        and the false-alarm rate once the threshold is fitted."""
        labels = np.asarray(y).reshape(-1) != 0
        out: dict[str, float] = {}
        if labels.any() and not labels.all():
            out["auroc"] = m.auroc(labels, pred)
        if self.threshold is not None:
            flagged = self.flagged(pred)
            p, r, f1 = m.precision_recall_f1(labels, flagged)
            false_alarms = float(flagged[~labels].mean()) if (~labels).any() else 0.0
            out.update(precision=p, recall=r, f1=f1, false_alarm_rate=false_alarms)
        return out

    def baselines(self, y_train: np.ndarray, y_test: np.ndarray) -> dict[str, dict[str, float]]:
        scores = np.zeros(len(y_test))  # always normal: one score, never above a threshold
        return {"always normal": replace(self, threshold=0.0).evaluate(scores, y_test)}

    def agree(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.flagged(a) == self.flagged(b)

    def correct(self, pred: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The alarm decision matches the label (1 = anomaly)."""
        return self.flagged(pred) == (np.asarray(y).reshape(-1) != 0)

    def record(self, pred: Any) -> dict[str, Any]:
        """The score and whether it raises an alarm (above the validation threshold)."""
        return {"score": float(pred), "alarm": bool(self.flagged(np.asarray([pred]))[0])}

    def urgent(self, pred: Any) -> bool:
        """An alarm is delivered before the results stored during an outage."""
        return bool(self.flagged(np.asarray([pred]))[0])

    def margin(self, pred: Any) -> float | None:
        """The alarm threshold minus the score (> 0: normal, < 0: an alarm; 0 at the
        threshold, which is not an alarm: the filter never reuses a result that close)."""
        if self.threshold is None:
            raise ValueError("the anomaly threshold is chosen on validation first (fit)")
        return float(self.threshold) - float(pred)
