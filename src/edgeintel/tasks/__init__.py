"""Task kinds: what a model is asked to do, and everything that depends on it.

A kind (an entry of ``TASKS``, named in a scenario as ``task.kind``) owns

* its **loss** (torch, imported only when training calls it) and the **target** the loss
  compares the model's output with (the labels, or the input itself for an autoencoder);
* its **prediction** from a model output (a label, a value, an anomaly score);
* its **metrics** and their direction (``metric``: the headline, ``higher_is_better``);
* its **trivial baselines** (majority class; mean and last-value predictors; an
  always-normal detector): a model must beat the best of them to be worth deploying;
* its **agreement rule**: when two predictions count as the same answer (equal labels;
  values within ``tolerance``; the same side of the anomaly threshold), used wherever a
  component compares a cheap answer with a reference one;
* a one-line **summary** of its figures for the report.

A kind is a frozen dataclass; its fields are its options (``tolerance``,
``false_alarm_rate``), read from the scenario's ``task`` section by ``make_task``. Quantities
fitted on validation data (the anomaly threshold, a default tolerance) are set by ``fit``,
which returns a new kind: test data never reaches it. Metrics are pure numpy functions in
``edgeintel.tasks.metrics``. Importing this package loads numpy only (no torch).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from edgeintel.registry import Registry

if TYPE_CHECKING:
    import torch

__all__ = ["TASKS", "TaskKind", "make_task"]


@dataclass(frozen=True)
class TaskKind(ABC):
    """One task kind; subclasses set the class attributes and implement the methods."""

    name: ClassVar[str]
    metric: ClassVar[str]  # the headline metric, a key of ``evaluate``'s result
    metric_label: ClassVar[str] = ""  # the headline as prose names it ("RMSE"; "": metric)
    higher_is_better: ClassVar[bool]
    unit: ClassVar[str] = ""  # of the headline metric ("" for a fraction)
    # the headline's possible values (a fraction: [0, 1]); None: unbounded (target units)
    metric_range: ClassVar[tuple[float, float] | None] = (0.0, 1.0)
    label_dtype: ClassVar[type[np.generic]] = np.int64
    early_exit: ClassVar[bool] = False  # has a confidence rule for early-exit heads
    # a prediction needs the input besides the model's output (a reconstruction error), so
    # a cached output cannot answer another input (no approximate reuse on a server)
    needs_input: ClassVar[bool] = False

    # ----------------------------------------------------------------- training (torch)

    def target(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """What the loss compares the model's output with (the labels by default)."""
        return y

    @abstractmethod
    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean loss of a batch (a scalar tensor)."""

    def soft_loss(
        self, student: torch.Tensor, teacher: torch.Tensor, temperature: float
    ) -> torch.Tensor:
        """Distillation's term pulling a student's outputs to a teacher's (mean over the
        batch): the squared error of the outputs by default (``temperature`` unused)."""
        import torch.nn.functional as F

        return F.mse_loss(student, teacher)

    def outputs(self, num_classes: int, input_shape: tuple[int, ...]) -> int:
        """Width of the model's output layer."""
        return num_classes

    # ----------------------------------------------------------------- evaluation (numpy)

    @abstractmethod
    def predict(self, output: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Per-sample predictions (labels, values or anomaly scores) from model outputs."""

    def fit(self, val_pred: np.ndarray, val_y: np.ndarray) -> TaskKind:
        """This kind with quantities chosen on validation predictions set (a copy)."""
        return self

    @abstractmethod
    def evaluate(self, pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Every metric of this kind (the headline ``metric`` among them)."""

    @abstractmethod
    def baselines(self, y_train: np.ndarray, y_test: np.ndarray) -> dict[str, dict[str, float]]:
        """Each trivial baseline's ``evaluate`` on the test labels (fitted on training only)."""

    @abstractmethod
    def agree(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Per-sample booleans: do predictions ``a`` and ``b`` count as the same answer?"""

    def correct(self, pred: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Per-sample booleans: is each prediction right about its true target? (``agree``
        with the truth by default: the label, a value within the tolerance)."""
        return self.agree(pred, y)

    def record(self, pred: Any) -> dict[str, Any]:
        """What a served result carries for one prediction (JSON-ready; e.g. a label)."""
        return {"prediction": np.asarray(pred).tolist()}

    def urgent(self, pred: Any) -> bool:
        """Must this single prediction reach the server ahead of stored results (an anomaly
        alarm)? The device's store-and-forward sends it before its backlog. No by default."""
        return False

    def margin(self, pred: Any) -> float | None:
        """Signed distance of one prediction to a change of its answer, in the prediction's
        units (an anomaly score's to the alarm threshold); None, the default, for kinds whose
        answer has no such boundary. The redundancy filter never reuses a result that an
        input's difference could move across it (``caching.filter.margin_sensitivity``)."""
        return None

    def same(self, a: Any, b: Any) -> bool:
        """Do two single predictions (a label, a value, an anomaly score) count as the same
        answer? ``agree`` on one sample: the rule the redundancy filter and the result cache
        apply to a reused result."""
        return bool(self.agree(np.asarray([a]), np.asarray([b]))[0])

    # ----------------------------------------------------------------- shared

    @classmethod
    def label(cls) -> str:
        """The headline metric's name in prose ("accuracy", "RMSE", "AUROC")."""
        return cls.metric_label or cls.metric

    def better(self, a: float, b: float) -> bool:
        """Is headline value ``a`` strictly better than ``b``?"""
        return a > b if self.higher_is_better else a < b

    def drop(self, reference: float, value: float) -> float:
        """How much worse ``value`` is than ``reference`` in the headline's unit (>= 0 is worse)."""
        return reference - value if self.higher_is_better else value - reference

    def best_baseline(self, y_train: np.ndarray, y_test: np.ndarray) -> tuple[str, float]:
        """(name, headline value) of the best trivial baseline."""
        scored = {n: m[self.metric] for n, m in self.baselines(y_train, y_test).items()}
        pick = max if self.higher_is_better else min
        name = pick(scored, key=lambda n: scored[n])
        return name, scored[name]

    def summary(self, metrics: dict[str, float], baseline: tuple[str, float] | None = None) -> str:
        """One line: the headline metric, the others, and the best baseline's headline."""
        unit = f" {self.unit}" if self.unit else ""
        head = f"{self.metric} {metrics[self.metric]:.4g}{unit}"
        rest = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k != self.metric)
        line = f"{head} ({rest})" if rest else head
        if baseline is not None:
            line += f"; best trivial baseline ({baseline[0]}) {baseline[1]:.4g}{unit}"
        return line

    def options(self) -> dict[str, Any]:
        """This kind's options as a mapping (``type(kind)(**kind.options()) == kind``)."""
        return dataclasses.asdict(self)


TASKS: Registry[type[TaskKind]] = Registry("task kind")


def make_task(name: str, **settings: Any) -> TaskKind:
    """The kind ``name`` configured from ``settings`` (a scenario ``task`` section's fields;
    those that are not options of the kind are ignored, None means the kind's default)."""
    cls = TASKS.get(name)
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in settings.items() if k in fields and v is not None})


def option_names(name: str) -> set[str]:
    """The options (dataclass fields) of the kind ``name``."""
    return {f.name for f in dataclasses.fields(TASKS.get(name))}


from edgeintel.tasks import kinds as _kinds  # noqa: E402,F401  (registers the built-in kinds)
