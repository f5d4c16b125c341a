"""Configuration of a federated run and the state its rounds leave behind.

``FederatedConfig`` (validated at construction) and ``ClientSpec`` say what to
run; ``RoundRecord`` is what one round did (counts, bytes per tier, duration,
energy); ``EngineState`` is everything needed to continue (checkpoints).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from edgeintel.errors import ConfigError
from edgeintel.training.aggregate import AggregationConfig
from edgeintel.training.attacks import AttackConfig
from edgeintel.training.compressors import CompressorConfig
from edgeintel.training.server_opt import Algorithm, ServerOptConfig

__all__ = ["ClientSpec", "EngineState", "FederatedConfig", "FlMode", "RoundRecord", "Tier"]


class FlMode(StrEnum):
    FEDERATED = "federated"
    HIERARCHICAL = "hierarchical"


class Tier(StrEnum):
    """Where an aggregation happens: flat FL's cloud, an edge server, or HierFAVG's cloud."""

    FLAT = "flat"
    EDGE = "edge"
    CLOUD = "cloud"


@dataclass(frozen=True)
class ClientSpec:
    """The engine's view of a device: where it attaches and how fast it is.

    ``edge`` is the node the device attaches to (an edge server, or the cloud's
    name for devices attached to the cloud). Speed is relative to this machine;
    bandwidth in Mbit/s, rtt in ms, power in W.
    """

    name: str
    edge: str
    compute_speed: float = 1.0
    bandwidth_mbps: float = 20.0
    rtt_ms: float = 10.0
    power_compute_w: float = 0.0
    power_tx_w: float = 0.0


@dataclass(frozen=True)
class FederatedConfig:
    """Settings of the federated engine (see docs/training.md for each field).

    ``clients_per_round``: devices sampled per (edge) round, ``None`` = all;
    ``local_steps`` (k1) or ``local_epochs``: local work per round (exactly one);
    ``lr``: client SGD learning rate; ``mu``: FedProx proximal weight;
    ``k2``: edge aggregations per cloud aggregation (hierarchical);
    ``byzantine_fraction``: the share of updates a robust rule assumes malicious
    (``f = round(fraction * n)`` per aggregation; ``None`` uses ``aggregation.f``);
    ``deadline_s`` or ``deadline_quantile``: round deadline in seconds, or the
    quantile of all devices' estimated round times; ``step_ms``: time of one local
    step at compute speed 1 (``None``: measured once on this machine when a
    deadline needs it); ``dropout``: probability that a sampled device drops out.
    ``secret_sampling``: draw the devices sampled each round from OS entropy instead
    of the seed (DP's amplification by sampling assumes nobody can predict the sample;
    a seeded sample is known to every party holding the scenario). Set by the scenario
    when DP is on, unless it asks for a reproducible simulation. ``bn_stats``: how a
    device's BatchNorm running statistics follow a round (``"round"``: the mean of the
    round's batch statistics; ``"momentum"``: the layers' own momentum; see
    ``edgeintel.training.client_train``).
    """

    mode: FlMode = FlMode.FEDERATED
    rounds: int = 20
    clients_per_round: int | None = None
    local_steps: int | None = 10
    local_epochs: int | None = None
    batch_size: int = 32
    lr: float = 0.05
    weight_decay: float = 0.0
    mu: float = 0.0
    server: ServerOptConfig = field(default_factory=ServerOptConfig)
    compressor: CompressorConfig = field(default_factory=CompressorConfig)
    aggregation: AggregationConfig = field(default_factory=AggregationConfig)
    byzantine_fraction: float | None = None
    attack: AttackConfig | None = None
    k2: int = 1
    deadline_s: float | None = None
    deadline_quantile: float | None = None
    step_ms: float | None = None
    dropout: float = 0.0
    eval_every: int = 1
    seed: int = 0
    chunk: int | None = None
    threads: int | None = 1
    secret_sampling: bool = False
    bn_stats: str = "round"

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ConfigError(f"rounds must be >= 1, got {self.rounds}")
        if self.clients_per_round is not None and self.clients_per_round < 1:
            raise ConfigError(f"clients_per_round must be >= 1, got {self.clients_per_round}")
        if (self.local_steps is None) == (self.local_epochs is None):
            raise ConfigError("give exactly one of local_steps and local_epochs")
        if self.local_steps is not None and self.local_steps < 1:
            raise ConfigError(f"local_steps must be >= 1, got {self.local_steps}")
        if self.local_epochs is not None and self.local_epochs < 1:
            raise ConfigError(f"local_epochs must be >= 1, got {self.local_epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.mu < 0 or self.weight_decay < 0:
            raise ConfigError("mu and weight_decay must be >= 0")
        if self.server.algorithm == Algorithm.FEDPROX and self.mu <= 0:
            raise ConfigError(f"fedprox needs mu > 0, got {self.mu}")
        if self.k2 < 1:
            raise ConfigError(f"k2 must be >= 1, got {self.k2}")
        if self.byzantine_fraction is not None and not 0 <= self.byzantine_fraction < 0.5:
            raise ConfigError(
                f"byzantine_fraction must lie in [0, 0.5), got {self.byzantine_fraction}"
            )
        if self.deadline_s is not None and self.deadline_quantile is not None:
            raise ConfigError("give at most one of deadline_s and deadline_quantile")
        if self.deadline_s is not None and not self.deadline_s > 0:
            raise ConfigError(f"deadline_s must be > 0, got {self.deadline_s}")
        if self.deadline_quantile is not None and not 0 < self.deadline_quantile <= 1:
            raise ConfigError(f"deadline_quantile must lie in (0, 1], got {self.deadline_quantile}")
        if self.step_ms is not None and not self.step_ms > 0:
            raise ConfigError(f"step_ms must be > 0, got {self.step_ms}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must lie in [0, 1), got {self.dropout}")
        if self.eval_every < 1 or (self.chunk is not None and self.chunk < 1):
            raise ConfigError("eval_every and chunk must be >= 1")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads}")
        if self.bn_stats not in ("round", "momentum"):
            raise ConfigError(f"bn_stats must be 'round' or 'momentum', got {self.bn_stats!r}")


@dataclass
class RoundRecord:
    """What happened in one (cloud) round; bytes per tier are this round's, not cumulative.

    ``accuracy`` is the task kind's headline metric on the test set (accuracy for
    classification, e.g. RMSE for regression; ``TaskKind.metric`` names it);
    ``val_metric`` the same metric on the validation split the engine selects the
    exported round on (``None`` without one).
    """

    round: int
    accuracy: float | None
    loss: float | None
    sampled: int
    aggregated: int
    stragglers: int
    dropped: int
    rejected: int
    malicious: int
    bytes: dict[str, int]
    duration_s: float
    energy_j: float
    val_metric: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EngineState:
    """Everything needed to continue training: serialize with ``to_dict``.

    ``weights``: the global model as a flat float32 vector (``get_weights`` order);
    ``server_state``: server optimizer arrays; ``residuals``: error-feedback
    residual per device name; ``momenta``: DGC momentum per device name (top-k with
    ``compressor.momentum``); ``step_ms``: the local-step time used for deadlines;
    ``best_round``/``best_val``/``best_weights``: the round best on the validation split so
    far, its metric and its global weights (``None`` without a validation split).
    """

    round: int
    weights: np.ndarray
    server_state: dict[str, np.ndarray] = field(default_factory=dict)
    residuals: dict[str, np.ndarray] = field(default_factory=dict)
    momenta: dict[str, np.ndarray] = field(default_factory=dict)
    history: list[RoundRecord] = field(default_factory=list)
    step_ms: float | None = None
    strategy_state: dict[str, Any] = field(default_factory=dict)
    best_round: int | None = None
    best_val: float | None = None
    best_weights: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict: arrays under weights/server_state/residuals, JSON-ready elsewhere."""
        return {
            "round": self.round,
            "weights": self.weights.copy(),
            "server_state": {k: v.copy() for k, v in self.server_state.items()},
            "residuals": {k: v.copy() for k, v in self.residuals.items()},
            "momenta": {k: v.copy() for k, v in self.momenta.items()},
            "history": [r.to_json() for r in self.history],
            "step_ms": self.step_ms,
            "strategy_state": dict(self.strategy_state),
            "best_round": self.best_round,
            "best_val": self.best_val,
            "best_weights": None if self.best_weights is None else self.best_weights.copy(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EngineState:
        return cls(
            round=int(d["round"]),
            weights=np.asarray(d["weights"], dtype=np.float32).copy(),
            server_state={
                k: np.asarray(v, np.float32).copy() for k, v in d["server_state"].items()
            },
            residuals={k: np.asarray(v, np.float32).copy() for k, v in d["residuals"].items()},
            momenta={k: np.asarray(v, np.float32).copy() for k, v in d.get("momenta", {}).items()},
            history=[RoundRecord(**r) for r in d["history"]],
            step_ms=d.get("step_ms"),
            strategy_state=dict(d.get("strategy_state", {})),
            best_round=d.get("best_round"),
            best_val=d.get("best_val"),
            best_weights=None
            if d.get("best_weights") is None
            else np.asarray(d["best_weights"], dtype=np.float32).copy(),
        )
