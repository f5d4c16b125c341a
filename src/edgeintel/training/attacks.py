"""Behaviours of malicious devices, as a registry of attacks.

An attack may poison a device's training labels (``poison_labels``: data
poisoning) and/or replace the updates malicious devices send
(``poison_updates``: model poisoning). Update attacks see the round's honest
updates as a matrix ``(n, d)`` (one flat update per participating device) and a
boolean mask of the malicious rows, so colluding attacks such as ALIE can use
round statistics. Registered attacks:

- ``sign_flip``: send ``-scale * u`` instead of the honest update ``u``.
- ``gaussian_noise``: send ``N(0, sigma^2)`` noise of the update's size.
- ``label_flip``: train on labels ``C - 1 - y`` (honest updates of a poisoned task).
- ``alie``: "A little is enough" (Baruch et al. 2019): every malicious device
  sends ``mu - z * sigma``, the coordinate-wise mean and standard deviation of
  the round's honest updates (an omniscient attacker, as in most robustness
  benchmarks), with ``z = Phi^-1((n - s) / n)``, ``s = floor(n / 2 + 1) - f``.
- ``ipm``: inner-product manipulation (Xie, Koyejo and Gupta 2019, "Fall of Empires"):
  every malicious device sends ``-epsilon * mu``, ``mu`` the mean of the round's honest
  updates, so the aggregate's inner product with the true descent direction turns
  negative once ``epsilon > (1 - f/n) / (f/n)`` for a plain mean (``epsilon = 0.1``
  targets median/Krum-style rules; large ``epsilon`` breaks FedAvg).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from statistics import NormalDist

import numpy as np

from edgeintel.errors import ConfigError
from edgeintel.registry import Registry

__all__ = [
    "ATTACKS",
    "Alie",
    "Attack",
    "AttackConfig",
    "AttackKind",
    "GaussianNoise",
    "InnerProductManipulation",
    "LabelFlip",
    "SignFlip",
    "alie_z",
    "make_attack",
]


class AttackKind(StrEnum):
    SIGN_FLIP = "sign_flip"
    GAUSSIAN_NOISE = "gaussian_noise"
    LABEL_FLIP = "label_flip"
    ALIE = "alie"
    IPM = "ipm"


@dataclass(frozen=True)
class AttackConfig:
    """``fraction``: share of devices that are malicious; ``scale``: sign-flip factor;
    ``sigma``: std of the Gaussian-noise attack; ``z``: ALIE override (``None``: from n, f);
    ``epsilon``: IPM factor (malicious devices send ``-epsilon`` times the honest mean)."""

    name: str = AttackKind.SIGN_FLIP
    fraction: float = 0.2
    scale: float = 1.0
    sigma: float = 1.0
    z: float | None = None
    epsilon: float = 0.1

    def __post_init__(self) -> None:
        ATTACKS.get(str(self.name))
        if not 0 <= self.fraction < 1:
            raise ConfigError(f"malicious fraction must lie in [0, 1), got {self.fraction}")
        if not self.scale > 0:
            raise ConfigError(f"attack scale must be > 0, got {self.scale}")
        if not self.sigma > 0:
            raise ConfigError(f"attack sigma must be > 0, got {self.sigma}")
        if not (math.isfinite(self.epsilon) and self.epsilon > 0):
            raise ConfigError(f"IPM epsilon must be > 0, got {self.epsilon}")


def alie_z(n: int, f: int) -> float:
    """z of Baruch et al. 2019: s = floor(n/2 + 1) - f supporters needed, z = Phi^-1((n - s)/n)."""
    s = math.floor(n / 2 + 1) - f
    if not 0 < s < n:
        raise ConfigError(f"ALIE needs 0 < floor(n/2 + 1) - f < n, got n={n}, f={f}")
    return NormalDist().inv_cdf((n - s) / n)  # the standard normal quantile, as scipy's ppf


class Attack:
    """Base class: honest by default; subclasses override one or both hooks."""

    def poison_labels(self, y: np.ndarray, num_classes: int) -> np.ndarray:
        return y

    def poison_updates(
        self, honest: np.ndarray, malicious: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        return honest


class SignFlip(Attack):
    def __init__(self, scale: float) -> None:
        self.scale = scale

    def poison_updates(
        self, honest: np.ndarray, malicious: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        out = honest.copy()
        out[malicious] = -self.scale * honest[malicious]
        return out


class GaussianNoise(Attack):
    def __init__(self, sigma: float) -> None:
        self.sigma = sigma

    def poison_updates(
        self, honest: np.ndarray, malicious: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        out = honest.copy()
        m = int(malicious.sum())
        out[malicious] = rng.normal(0.0, self.sigma, size=(m, honest.shape[1])).astype(np.float32)
        return out


class LabelFlip(Attack):
    def poison_labels(self, y: np.ndarray, num_classes: int) -> np.ndarray:
        return (num_classes - 1 - np.asarray(y)).astype(np.int64)


class Alie(Attack):
    def __init__(self, z: float | None) -> None:
        self.z = z

    def poison_updates(
        self, honest: np.ndarray, malicious: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        n, f = len(honest), int(malicious.sum())
        if f == 0:
            return honest
        z = alie_z(n, f) if self.z is None else self.z
        mu = honest.mean(0, dtype=np.float64)
        sd = honest.std(0, dtype=np.float64)
        out = honest.copy()
        out[malicious] = (mu - z * sd).astype(np.float32)
        return out


class InnerProductManipulation(Attack):
    def __init__(self, epsilon: float) -> None:
        self.epsilon = epsilon

    def poison_updates(
        self, honest: np.ndarray, malicious: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        if not malicious.any() or malicious.all():
            return honest
        mu = honest[~malicious].mean(0, dtype=np.float64)
        out = honest.copy()
        out[malicious] = (-self.epsilon * mu).astype(np.float32)
        return out


AttackFactory = Callable[[AttackConfig], Attack]
ATTACKS: Registry[AttackFactory] = Registry("attack")
ATTACKS.add(AttackKind.SIGN_FLIP, lambda cfg: SignFlip(cfg.scale))
ATTACKS.add(AttackKind.GAUSSIAN_NOISE, lambda cfg: GaussianNoise(cfg.sigma))
ATTACKS.add(AttackKind.LABEL_FLIP, lambda cfg: LabelFlip())
ATTACKS.add(AttackKind.ALIE, lambda cfg: Alie(cfg.z))
ATTACKS.add(AttackKind.IPM, lambda cfg: InnerProductManipulation(cfg.epsilon))


def make_attack(config: AttackConfig) -> Attack:
    return ATTACKS.get(str(config.name))(config)
