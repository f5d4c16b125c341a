"""What a cached model output answers, so that an approximate tier's neighbours vote by the
task kind's agreement rule.

A server's result cache stores a model's raw outputs (``{output name: array}``, one row).
Its approximate tier reuses a neighbour's outputs for a new input when most of the ``k``
nearest stored inputs *agree*; what agreeing means belongs to the model's task kind
(``TaskKind.same``: equal labels; regression values within the tolerance). A
``CachedAnswer`` carries the outputs, their arg-max ``label`` (the rule when no kind is
known: a classifier's class) and the kind's prediction ``value``. The in-process cache
(``runtime.wiring.ServerResultCache``) and the Redis-shared one's local tier
(``caching.redis_cache.RedisResultCache``) both build their answers here, so they reuse the
same results. A kind whose prediction needs the input itself (``needs_input``: an anomaly
score is the error of reconstructing *that* input) has no approximate reuse at all
(``approximate_allowed``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeintel.tasks import TaskKind

__all__ = [
    "CachedAnswer",
    "answer_rule",
    "approximate_allowed",
    "cached_answer",
    "output_label",
]


@dataclass(frozen=True, eq=False)
class CachedAnswer:
    """A model's outputs, told apart by their predicted labels; ``value`` is the task kind's
    prediction from them (None: no kind known), which the kNN vote compares by its rule."""

    outputs: dict[str, np.ndarray]
    label: tuple[Any, ...]
    value: Any = None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CachedAnswer) and self.label == other.label

    def __hash__(self) -> int:
        return hash(self.label)

    def __str__(self) -> str:
        return str(self.label)


def output_label(outputs: Mapping[str, np.ndarray]) -> tuple[Any, ...]:
    """What two results must share to count as the same answer without a kind: arg-max over
    the last axis of float outputs (class scores), the bytes of any other output."""
    out: list[Any] = []
    for name in sorted(outputs):
        a = np.asarray(outputs[name])
        if a.dtype.kind == "f" and a.ndim >= 1 and a.shape[-1] > 1:
            out.append((name, tuple(np.argmax(a, axis=-1).reshape(-1).tolist())))
        else:
            out.append((name, a.dtype.str, a.shape, a.tobytes()))
    return tuple(out)


def approximate_allowed(task: TaskKind | None) -> bool:
    """May a neighbour's outputs answer another input? Not when the kind's prediction needs
    the input itself (an anomaly score)."""
    return task is None or not task.needs_input


def cached_answer(outputs: Mapping[str, np.ndarray], task: TaskKind | None) -> CachedAnswer:
    """A one-row result as the approximate tier stores it: a copy of its outputs, their label
    and the kind's prediction from the first output (by name; None without a kind or for a
    kind that needs the input)."""
    kept = {k: np.array(v, copy=True) for k, v in outputs.items()}
    value = None
    if task is not None and not task.needs_input:
        first = np.asarray(kept[sorted(kept)[0]])
        pred = np.asarray(task.predict(first, np.empty((len(first), 0))))
        value = pred[0].item() if pred[0].ndim == 0 else tuple(pred[0].tolist())
    return CachedAnswer(kept, output_label(kept), value)


def answer_rule(task: TaskKind | None) -> Callable[[Any, Any], bool] | None:
    """The vote's agreement rule between two ``CachedAnswer``s: the kind's ``same`` on their
    values; None (equal labels, ``CachedAnswer.__eq__``) without a kind."""
    if task is None:
        return None

    def same(a: CachedAnswer, b: CachedAnswer) -> bool:
        return task.same(a.value, b.value)

    return same
