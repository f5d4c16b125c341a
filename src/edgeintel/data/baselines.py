"""Trivial baselines that look at the samples, not only the labels: pure numpy.

The task kinds' own baselines (majority class, mean, always normal) see labels only.
A model worth deploying must also beat the simplest thing that looks at the inputs:
the 1-nearest-neighbour classifier on the (standardised) raw samples. If it does not,
the dataset is too easy (video frames of a few scenes) or the model is not learning
anything a lookup table would not.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MAX_REFERENCE", "MAX_WORK", "nearest_neighbour_predict"]

MAX_REFERENCE = 20_000
"""Largest reference (training) set a 1-NN baseline searches; larger ones are subsampled
with the given seed (the baseline is then stated as on that many samples)."""

MAX_WORK = 1e11
"""Multiply-adds a 1-NN baseline may spend (test x reference x features, a few s on one
core): wide samples (audio) search a smaller reference, never fewer than 1,000."""


def nearest_neighbour_predict(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    *,
    max_reference: int = MAX_REFERENCE,
    max_work: float = MAX_WORK,
    seed: int = 0,
    chunk: int = 512,
) -> tuple[np.ndarray, int]:
    """Labels of each test sample's nearest training sample (Euclidean, flattened).

    Samples are flattened to vectors; distances are computed in ``chunk``-row blocks
    as ``|a|^2 - 2 a.b + |b|^2`` in float32 (ties go to the lowest training index).
    Returns ``(predictions, reference size)``; a training set larger than
    ``max_reference`` or than ``max_work / (test samples x features)`` (at least 1,000)
    is subsampled without replacement with ``seed``.
    """
    a = np.asarray(x_train, dtype=np.float32).reshape(len(x_train), -1)
    ya = np.asarray(y_train)
    if len(a) == 0:
        raise ValueError("nearest-neighbour baseline: the training set is empty")
    b = np.asarray(x_test, dtype=np.float32).reshape(len(x_test), -1)
    cap = min(max_reference, max(1000, int(max_work / max(1, len(b) * a.shape[1]))))
    if len(a) > cap:
        keep = np.sort(np.random.default_rng(seed).choice(len(a), cap, replace=False))
        a, ya = a[keep], ya[keep]
    a2 = np.einsum("ij,ij->i", a, a)
    out = np.empty(len(b), dtype=ya.dtype)
    for s in range(0, len(b), chunk):
        blk = b[s : s + chunk]
        d = a2[None, :] - 2.0 * blk @ a.T  # |b|^2 is the same along a row: not needed
        out[s : s + chunk] = ya[np.argmin(d, axis=1)]
    return out, len(a)
