"""A model's weights as a list of float32 numpy arrays, and flat vectors of them.

What crosses the federated engine is every *floating-point* entry of the
model's ``state_dict`` in ``state_dict`` order: trainable parameters **and**
BatchNorm running statistics (``running_mean``, ``running_var``). Averaging the
running statistics with the parameters keeps the global model usable in eval
mode (the choice Flower's PyTorch examples make). Integer buffers
(``num_batches_tracked``) stay local: they are counters, not weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from edgeintel.errors import DataError, ModelError

__all__ = [
    "flatten",
    "get_weights",
    "set_weights",
    "unflatten",
    "weight_names",
    "weight_shapes",
]


def weight_names(model: nn.Module) -> list[str]:
    """Names of the floating-point state_dict entries, in state_dict order."""
    return [k for k, v in model.state_dict().items() if torch.is_floating_point(v)]


def get_weights(model: nn.Module) -> list[np.ndarray]:
    """Copies of the model's floating-point state as float32 arrays (state_dict order)."""
    return [
        v.detach().cpu().numpy().astype(np.float32, copy=True)
        for v in model.state_dict().values()
        if torch.is_floating_point(v)
    ]


def set_weights(model: nn.Module, weights: Sequence[np.ndarray]) -> None:
    """Load arrays from ``get_weights`` order into the model (in place)."""
    state = model.state_dict()
    names = [k for k, v in state.items() if torch.is_floating_point(v)]
    if len(weights) != len(names):
        raise ModelError(f"expected {len(names)} weight arrays for this model, got {len(weights)}")
    for name, w in zip(names, weights, strict=True):
        if tuple(w.shape) != tuple(state[name].shape):
            raise ModelError(
                f"weight {name!r}: expected shape {tuple(state[name].shape)}, got {tuple(w.shape)}"
            )
        with torch.no_grad():
            state[name].copy_(torch.from_numpy(np.asarray(w, dtype=np.float32)))


def weight_shapes(weights: Sequence[np.ndarray]) -> list[tuple[int, ...]]:
    return [tuple(int(d) for d in w.shape) for w in weights]


def flatten(weights: Sequence[np.ndarray]) -> np.ndarray:
    """One float32 vector holding every array in order."""
    if not weights:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate([np.asarray(w, dtype=np.float32).ravel() for w in weights])


def unflatten(vector: np.ndarray, shapes: Sequence[tuple[int, ...]]) -> list[np.ndarray]:
    """Inverse of ``flatten`` given the shapes."""
    sizes = [int(np.prod(s)) for s in shapes]
    if vector.ndim != 1 or vector.size != sum(sizes):
        raise DataError(f"flat vector of {vector.size} values does not fit shapes totalling {sum(sizes)}")
    out, pos = [], 0
    for s, n in zip(shapes, sizes, strict=True):
        out.append(vector[pos : pos + n].reshape(s))
        pos += n
    return out
