"""Server-side optimizers (Reddi et al. 2021, "Adaptive Federated Optimization").

The aggregated client delta ``delta`` (mean of ``local - global``) acts as a
negative pseudo-gradient. Pure functions over flat float32 vectors; the state is
a dict of arrays so it checkpoints as is.

- ``fedavg`` / ``fedprox``: ``w += server_lr * delta``.
- ``fedavgm``: ``v = beta * v + delta``; ``w += server_lr * v`` (Hsu et al. 2019).
- ``fedadam``: ``m = b1 m + (1 - b1) delta``; ``v = b2 v + (1 - b2) delta^2``;
  ``w += server_lr * m / (sqrt(v) + tau)`` (no bias correction, as in the paper).

``SERVER_OPTIMIZERS`` maps an algorithm name to its step, so users can register
their own; ``Algorithm`` names the built-in ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from edgeintel.errors import ConfigError
from edgeintel.registry import Registry

__all__ = ["SERVER_OPTIMIZERS", "Algorithm", "ServerOptConfig", "ServerStep", "server_step"]


class Algorithm(StrEnum):
    FEDAVG = "fedavg"
    FEDPROX = "fedprox"
    FEDAVGM = "fedavgm"
    FEDADAM = "fedadam"


@dataclass(frozen=True)
class ServerOptConfig:
    """``algorithm``: a name in ``SERVER_OPTIMIZERS``; the other fields are its parameters."""

    algorithm: str = Algorithm.FEDAVG
    server_lr: float = 1.0
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.99
    tau: float = 1e-3

    def __post_init__(self) -> None:
        SERVER_OPTIMIZERS.get(str(self.algorithm))  # raises ConfigError listing the known ones
        if not self.server_lr > 0:
            raise ConfigError(f"server_lr must be > 0, got {self.server_lr}")
        for name in ("momentum", "beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"server {name} must lie in [0, 1), got {getattr(self, name)}")
        if not self.tau > 0:
            raise ConfigError(f"server tau must be > 0, got {self.tau}")


ServerStep = Callable[
    [np.ndarray, np.ndarray, dict[str, np.ndarray], ServerOptConfig],
    tuple[np.ndarray, dict[str, np.ndarray]],
]
SERVER_OPTIMIZERS: Registry[ServerStep] = Registry("federated algorithm")


def _sgd(
    w: np.ndarray, d: np.ndarray, state: dict[str, np.ndarray], config: ServerOptConfig
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    return (w + config.server_lr * d).astype(np.float32), dict(state)


def _avgm(
    w: np.ndarray, d: np.ndarray, state: dict[str, np.ndarray], config: ServerOptConfig
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    v = config.momentum * state.get("v", np.zeros_like(d)) + d
    return (w + config.server_lr * v).astype(np.float32), {"v": v.astype(np.float32)}


def _adam(
    w: np.ndarray, d: np.ndarray, state: dict[str, np.ndarray], config: ServerOptConfig
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    m = config.beta1 * state.get("m", np.zeros_like(d)) + (1 - config.beta1) * d
    v = config.beta2 * state.get("v", np.zeros_like(d)) + (1 - config.beta2) * d * d
    new = w + config.server_lr * m / (np.sqrt(v) + config.tau)
    return new.astype(np.float32), {"m": m.astype(np.float32), "v": v.astype(np.float32)}


SERVER_OPTIMIZERS.add(Algorithm.FEDAVG, _sgd)
SERVER_OPTIMIZERS.add(Algorithm.FEDPROX, _sgd)  # the proximal term acts on the clients
SERVER_OPTIMIZERS.add(Algorithm.FEDAVGM, _avgm)
SERVER_OPTIMIZERS.add(Algorithm.FEDADAM, _adam)


def server_step(
    weights: np.ndarray, delta: np.ndarray, state: dict[str, np.ndarray], config: ServerOptConfig
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One server update; returns (new weights, new state). Inputs are not modified."""
    w = np.asarray(weights, dtype=np.float32)
    d = np.asarray(delta, dtype=np.float32)
    return SERVER_OPTIMIZERS.get(str(config.algorithm))(w, d, state, config)
