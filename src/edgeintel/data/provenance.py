"""Which data a model or artifact was fitted on, by role, and figures that put accuracy in context.

Roles: ``device shards (federated rounds)`` (data that never left the devices),
``server-held set`` (``data.server_fraction``), ``central train split`` (pooled
training data: only legitimate for a centrally trained model), ``validation``
(selection only) and ``none``. The split record goes into the exported model's
metadata so ``edgeintel compress MODEL.onnx`` can evaluate on the samples the
model was not trained on.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from edgeintel.data.split import RunSplits

__all__ = [
    "CENTRAL_TRAIN",
    "DEVICE_SHARDS",
    "NONE",
    "SERVER_SET",
    "chance_accuracy",
    "compare_to_central",
    "index_digest",
    "split_record",
]

DEVICE_SHARDS = "device shards (federated rounds)"
SERVER_SET = "server-held set"
CENTRAL_TRAIN = "central train split"
NONE = "none"


def chance_accuracy(y: np.ndarray) -> float:
    """Accuracy of always predicting the most frequent class of ``y`` (the majority baseline)."""
    y = np.asarray(y)
    if len(y) == 0:
        return float("nan")
    return float(np.bincount(y).max() / len(y))


def index_digest(idx: np.ndarray) -> str:
    """sha256 (first 16 hex digits) of a sorted index set, to check a split is reproduced."""
    arr = np.sort(np.asarray(idx, dtype=np.int64))
    return hashlib.sha256(arr.tobytes()).hexdigest()[:16]


def split_record(spec: Any, seed: int, splits: RunSplits, dataset: str) -> dict[str, Any]:
    """What reproduces the run's split: the data spec (without partition), seed and digests."""
    data_spec = spec.model_dump(mode="json", exclude={"partition"}, exclude_none=True)
    return {
        "dataset": dataset,
        "data_spec": data_spec,
        "seed": seed,
        "kind": splits.kind,
        "sizes": splits.to_json(),
        "digests": {
            "train": index_digest(splits.train),
            "validation": index_digest(splits.val),
            "server": index_digest(splits.server),
            "test": index_digest(splits.test),
        },
    }


NEAR_CHANCE = 0.10  # accuracy above chance below which an edge-trained model is flagged
FAR_FROM_CENTRAL = 0.15  # accuracy below the central baseline beyond which it is flagged


def compare_to_central(
    edge_accuracy: float | None, central_accuracy: float | None, chance: float
) -> dict[str, Any]:
    """Edge vs central baseline vs majority-class chance (all test accuracies in [0, 1]).

    ``gap_to_central`` = central - edge (positive: edge training is worse);
    ``warnings`` flag an edge model less than 0.10 above chance or more than
    0.15 below the central baseline.
    """
    out: dict[str, Any] = {
        "chance_accuracy": round(chance, 4),
        "central_accuracy": central_accuracy,
        "gap_to_central": None,
        "above_chance": None,
        "warnings": [],
    }
    if edge_accuracy is None:
        return out
    out["above_chance"] = round(edge_accuracy - chance, 4)
    if edge_accuracy - chance < NEAR_CHANCE:
        out["warnings"].append(
            f"edge-trained accuracy {edge_accuracy:.3f} is within {NEAR_CHANCE:.2f} of chance "
            f"({chance:.3f}, always the majority class): edge training learned little"
        )
    if central_accuracy is not None:
        gap = central_accuracy - edge_accuracy
        out["gap_to_central"] = round(gap, 4)
        if gap > FAR_FROM_CENTRAL:
            out["warnings"].append(
                f"edge-trained accuracy {edge_accuracy:.3f} is {gap:.3f} below the central "
                f"baseline ({central_accuracy:.3f})"
            )
    return out
