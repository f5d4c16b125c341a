"""Embedded federated engine: flat FedAvg/FedProx/FedAdam/FedAvgM and hierarchical HierFAVG.

Everything runs in process and is deterministic by seed: every random draw
comes from ``numpy.random.default_rng([seed, round, sub_round, purpose, ...])``,
so the round counter and the seed are the whole RNG state (a resumed engine
draws exactly what an uninterrupted one would).

A round of the **flat** mode (``federated``): the cloud samples devices, each
downloads the global model (cloud -> edge once per edge, edge -> device per
device), trains ``local_steps`` SGD steps (or ``local_epochs``) on its own
shard, sends its compressed delta, which its edge server relays to the cloud
hop by hop; the cloud aggregates and applies its server optimizer.

A round of the **hierarchical** mode (HierFAVG, Liu et al. 2020) is one cloud
aggregation: each edge server starts from the global model and runs ``k2``
edge rounds (sample devices, ``k1 = local_steps`` local steps each, aggregate at
the edge); then every edge sends its model delta to the cloud, which averages
them weighted by the samples each edge's devices trained on.

Local training is vectorized over clients with ``torch.func.vmap`` (one
batched step trains every client of a chunk), which is what makes hundreds of
simulated devices cheap on two cores.

Stragglers: each device's round time is estimated from its profile (download
and upload over its access link plus ``steps * step_ms / compute_speed``); a
device whose estimate exceeds the round deadline is cut before it trains (it
still downloaded the model). Dropouts: each sampled device vanishes mid-round
with probability ``dropout`` after its download. Bytes are the lengths of the
real payloads (see ``compressors``) and of the float32 model (``4 d``).

Extension seam (``Strategy``): ``client_update`` transforms a device's flat
update before compression; ``aggregate`` combines the decoded updates at an
aggregator (``ctx.tier`` says which); ``on_round_end`` runs after each round
with the engine (checkpointing); ``state_dict``/``load_state_dict`` let a
strategy's own state ride in ``EngineState``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from edgeintel.errors import ConfigError, DataError, TrainingError
from edgeintel.threads import thread_limit
from edgeintel.training.aggregate import (
    AggregationConfig,
    aggregate,
    weighted_mean,
)
from edgeintel.training.attacks import Attack, AttackConfig, make_attack
from edgeintel.training.compressors import (
    Compressor,
    CompressorConfig,
    compress_with_feedback,
    make_compressor,
)
from edgeintel.training.local import predict_logits
from edgeintel.training.server_opt import Algorithm, ServerOptConfig, server_step
from edgeintel.training.weights import flatten, get_weights, set_weights, unflatten, weight_shapes

__all__ = [
    "TIERS",
    "AggregationContext",
    "ClientSpec",
    "EngineState",
    "FederatedConfig",
    "FederatedEngine",
    "FlMode",
    "Hop",
    "RoundRecord",
    "Strategy",
    "Tier",
]

log = logging.getLogger(__name__)

TIERS = ("device_to_edge", "edge_to_device", "edge_to_cloud", "cloud_to_edge")


class FlMode(StrEnum):
    FEDERATED = "federated"
    HIERARCHICAL = "hierarchical"


class Tier(StrEnum):
    """Where an aggregation happens: flat FL's cloud, an edge server, or HierFAVG's cloud."""

    FLAT = "flat"
    EDGE = "edge"
    CLOUD = "cloud"


@dataclass(frozen=True)
class Hop:
    """One backhaul link on an edge server's path to the cloud."""

    bandwidth_mbps: float
    rtt_ms: float = 0.0


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


@dataclass
class RoundRecord:
    """What happened in one (cloud) round; bytes per tier are this round's, not cumulative."""

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

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AggregationContext:
    """Passed to ``Strategy.aggregate``: where and among whom the aggregation happens.

    ``f``: Byzantine updates the rule must tolerate; ``rng``: a generator private
    to this aggregation (seeded from seed, round, sub-round and node) for noise.
    """

    round: int
    sub_round: int
    tier: Tier
    node: str
    clients: tuple[str, ...]
    f: int
    rng: np.random.Generator


class Strategy:
    """The pluggable part of a round. Subclass and override what you need.

    Default behaviour: identity on the client, the configured aggregation rule
    at flat and edge aggregators, a sample-weighted mean of edge models at the
    HierFAVG cloud.
    """

    def __init__(self, aggregation: AggregationConfig | None = None) -> None:
        self.aggregation = aggregation or AggregationConfig()

    def client_update(self, update: np.ndarray, client: ClientSpec, round: int) -> np.ndarray:
        """Transform a device's flat float32 update before it is compressed and sent."""
        return update

    def aggregate(
        self, updates: list[np.ndarray], weights: np.ndarray, ctx: AggregationContext
    ) -> np.ndarray:
        """Combine decoded, finite flat updates (weights: sample counts) into one delta."""
        if ctx.tier is Tier.CLOUD:
            return weighted_mean([[u] for u in updates], weights)[0]
        cfg = replace(self.aggregation, f=ctx.f)
        return aggregate([[u] for u in updates], weights, cfg)[0]

    def should_continue(self, engine: FederatedEngine) -> bool:
        """Checked by ``run`` before every round; False ends training (e.g. DP budget spent)."""
        return True

    def on_round_end(self, engine: FederatedEngine) -> None:
        """Called after every round (the engine's ``state`` is up to date)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state


@dataclass
class EngineState:
    """Everything needed to continue training: serialize with ``to_dict``.

    ``weights``: the global model as a flat float32 vector (``get_weights`` order);
    ``server_state``: server optimizer arrays; ``residuals``: error-feedback
    residual per device name; ``step_ms``: the local-step time used for deadlines.
    """

    round: int
    weights: np.ndarray
    server_state: dict[str, np.ndarray] = field(default_factory=dict)
    residuals: dict[str, np.ndarray] = field(default_factory=dict)
    history: list[RoundRecord] = field(default_factory=list)
    step_ms: float | None = None
    strategy_state: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict: arrays under weights/server_state/residuals, JSON-ready elsewhere."""
        return {
            "round": self.round,
            "weights": self.weights.copy(),
            "server_state": {k: v.copy() for k, v in self.server_state.items()},
            "residuals": {k: v.copy() for k, v in self.residuals.items()},
            "history": [r.to_json() for r in self.history],
            "step_ms": self.step_ms,
            "strategy_state": dict(self.strategy_state),
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
            history=[RoundRecord(**r) for r in d["history"]],
            step_ms=d.get("step_ms"),
            strategy_state=dict(d.get("strategy_state", {})),
        )


# --------------------------------------------------------------------------- engine


class FederatedEngine:
    """In-process federated training of one model across simulated devices.

    ``parts[i]`` holds the indices into ``(x_train, y_train)`` of ``clients[i]``'s
    data. ``edge_paths`` maps an edge server to its hops up to the cloud
    (absent or empty: the node is the cloud).
    """

    def __init__(
        self,
        model: nn.Module,
        x_train: np.ndarray,
        y_train: np.ndarray,
        parts: Sequence[np.ndarray],
        clients: Sequence[ClientSpec],
        x_test: np.ndarray,
        y_test: np.ndarray,
        config: FederatedConfig,
        num_classes: int | None = None,
        edge_paths: dict[str, Sequence[Hop]] | None = None,
        strategy: Strategy | None = None,
    ) -> None:
        if len(parts) != len(clients):
            raise DataError(f"{len(parts)} data shards for {len(clients)} clients")
        if len(x_train) != len(y_train):
            raise DataError(f"{len(x_train)} training samples but {len(y_train)} labels")
        if len(y_test) == 0:
            raise DataError("the test set is empty")
        self.model = model
        self.config = config
        self.clients = list(clients)
        self.parts = [np.asarray(p, dtype=np.int64) for p in parts]
        self.num_classes = int(num_classes if num_classes is not None else int(y_train.max()) + 1)
        self.edge_paths = {k: tuple(v) for k, v in (edge_paths or {}).items()}
        self.strategy = strategy or Strategy(config.aggregation)
        self.compressor: Compressor = make_compressor(config.compressor)
        self.attack: Attack | None = make_attack(config.attack) if config.attack else None
        self.x_test, self.y_test = x_test, np.asarray(y_test, dtype=np.int64)

        self.no_data = [
            c.name for c, p in zip(self.clients, self.parts, strict=True) if len(p) == 0
        ]
        for name in self.no_data:
            log.warning("device %s has no training data; it is left out of training", name)
        self.available = [i for i, p in enumerate(self.parts) if len(p) > 0]
        if not self.available:
            raise DataError("no device has training data")

        self.shapes = weight_shapes(get_weights(model))
        self.names = [k for k, v in model.state_dict().items() if torch.is_floating_point(v)]
        self.dim = int(sum(math.prod(s) for s in self.shapes))
        self._param_names = [n for n, _ in model.named_parameters()]
        self._buffer_names = [n for n, _ in model.named_buffers()]
        self._int_buffers = {
            n: b.detach().clone()
            for n, b in model.named_buffers()
            if not torch.is_floating_point(b)
        }

        # malicious devices: fixed for the whole run, drawn among devices with data
        self.malicious = np.zeros(len(self.clients), dtype=bool)
        if self.attack is not None and config.attack is not None:
            n_bad = round(config.attack.fraction * len(self.available))
            rng = np.random.default_rng([config.seed, 0xA77AC])
            bad = rng.choice(self.available, size=n_bad, replace=False)
            self.malicious[bad] = True
        y = np.asarray(y_train, dtype=np.int64).copy()
        if self.attack is not None:
            for i in np.flatnonzero(self.malicious):
                y[self.parts[i]] = self.attack.poison_labels(y[self.parts[i]], self.num_classes)
        self._x = torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32))
        self._y = torch.from_numpy(y)

        self.state = EngineState(
            round=0, weights=flatten(get_weights(model)), step_ms=config.step_ms
        )
        self._deadline: float | None = None
        self._vectorize = True
        # Clients trained per vmap batch. vmap turns a conv into a grouped conv, which on
        # CPU is 1.5-3x slower than training conv clients one at a time (measured on
        # MNIST image_cnn: 28.6 s at 128 vs 10.6 s at 1 per round); dense models gain a little.
        has_conv = any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())
        self._chunk = config.chunk or (1 if has_conv else 128)

    # ----------------------------------------------------------------- public

    @property
    def weights(self) -> list[np.ndarray]:
        """The global model as arrays (``get_weights`` order)."""
        return [a.copy() for a in unflatten(self.state.weights, self.shapes)]

    def global_model(self) -> nn.Module:
        """The wrapped model with the current global weights loaded."""
        set_weights(self.model, unflatten(self.state.weights, self.shapes))
        self.model.eval()
        return self.model

    def state_dict(self) -> dict[str, Any]:
        self.state.strategy_state = self.strategy.state_dict()
        return self.state.to_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        st = EngineState.from_dict(state)
        if st.weights.size != self.dim:
            raise DataError(f"state holds {st.weights.size} weights, this model has {self.dim}")
        self.state = st
        self.strategy.load_state_dict(st.strategy_state)

    def run(
        self, rounds: int | None = None, on_round: Callable[[RoundRecord], None] | None = None
    ) -> list[RoundRecord]:
        """Run until ``rounds`` (default ``config.rounds``) rounds are done in total."""
        total = self.config.rounds if rounds is None else rounds
        while self.state.round < total:
            if not self.strategy.should_continue(self):
                log.info("strategy stopped training after round %d", self.state.round)
                break
            rec = self.run_round()
            if on_round is not None:
                on_round(rec)
        return self.state.history

    def evaluate(self) -> tuple[float, float]:
        """(accuracy in [0, 1], mean cross-entropy) of the global model on the test set."""
        logits = predict_logits(self.global_model(), self.x_test)
        lt = torch.from_numpy(logits)
        loss = float(nn.functional.cross_entropy(lt, torch.from_numpy(self.y_test)))
        return float((logits.argmax(1) == self.y_test).mean()), loss

    def run_round(self) -> RoundRecord:
        """Run the next round and return its record (also appended to ``state.history``)."""
        # torch and numpy's BLAS (Krum's Gram matrix) on config.threads; the global RNG
        # state and thread counts are restored afterwards
        with torch.random.fork_rng(devices=[]), thread_limit(self.config.threads):
            return self._run_round()

    def _run_round(self) -> RoundRecord:
        r = self.state.round + 1
        cfg = self.config
        if self._deadline is None and (cfg.deadline_s or cfg.deadline_quantile):
            self._deadline = self._compute_deadline()
        rec = self._hier_round(r) if cfg.mode is FlMode.HIERARCHICAL else self._flat_round(r)
        if rec.rejected > 0 and rec.aggregated == 0:
            raise TrainingError(
                f"federated training diverged in round {r}: every update ({rec.rejected}) was "
                f"NaN or infinite (client lr {cfg.lr:g}); lower the client learning rate"
            )
        if not np.isfinite(self.state.weights).all():
            raise TrainingError(
                f"federated training diverged in round {r}: the global model's weights are "
                f"NaN or infinite (client lr {cfg.lr:g}, server lr {cfg.server.server_lr:g}); "
                "lower the learning rates"
            )
        if r % cfg.eval_every == 0 or r == cfg.rounds:
            rec.accuracy, rec.loss = self.evaluate()
        self.state.round = r
        self.state.history.append(rec)
        self.state.strategy_state = self.strategy.state_dict()
        self.strategy.on_round_end(self)
        return rec

    # ----------------------------------------------------------------- timing

    def _steps(self, i: int) -> int:
        if self.config.local_steps is not None:
            return self.config.local_steps
        epochs = self.config.local_epochs or 1
        return max(1, math.ceil(epochs * len(self.parts[i]) / self.config.batch_size))

    def _model_bytes(self) -> int:
        return 4 * self.dim

    def _up_bytes_estimate(self) -> int:
        return len(self.compressor.encode(np.zeros(self.dim, dtype=np.float32)))

    def _client_time(self, i: int) -> tuple[float, float, float]:
        """(round time s, compute time s, upload time s) of client ``i`` from its profile."""
        c = self.clients[i]
        bw = c.bandwidth_mbps * 1e6
        down = 8 * self._model_bytes() / bw
        up = 8 * self._up_bytes_estimate() / bw
        step_ms = self.state.step_ms or 0.0
        compute = self._steps(i) * step_ms / 1000.0 / c.compute_speed
        return 2 * c.rtt_ms / 1000.0 + down + compute + up, compute, up

    def _measure_step_ms(self) -> float:
        """Median wall time of one local training step on this machine (ms)."""
        i = self.available[0]
        start = np.tile(self.state.weights, (1, 1))
        batches = np.zeros((1, 1, self.config.batch_size), dtype=np.int64) + self.parts[i][0]
        times = []
        for _ in range(7):
            t0 = time.perf_counter()
            self._train(start, batches, np.ones((1, 1), dtype=np.float32))
            times.append(time.perf_counter() - t0)
        return float(np.median(times[2:]) * 1000.0)

    def _compute_deadline(self) -> float:
        if self.state.step_ms is None:
            self.state.step_ms = self._measure_step_ms()
        if self.config.deadline_s is not None:
            return self.config.deadline_s
        times = [self._client_time(i)[0] for i in self.available]
        return float(np.quantile(times, self.config.deadline_quantile or 1.0))

    # ----------------------------------------------------------------- local training

    def _batches(self, i: int, r: int, sub: int, steps: int) -> np.ndarray:
        """(steps, batch) global sample indices: reshuffled passes over the device's shard."""
        idx = self.parts[i]
        rng = np.random.default_rng([self.config.seed, r, sub, 1, i])
        need = steps * self.config.batch_size
        reps = math.ceil(need / len(idx))
        order = np.concatenate([rng.permutation(idx) for _ in range(reps)])[:need]
        return order.reshape(steps, self.config.batch_size)

    def _train(self, start: np.ndarray, batches: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Train clients from flat starts ``(C, d)`` on ``batches (C, T, B)``; ``mask (C, T)``
        switches steps off (shorter clients). Returns the final flat weights ``(C, d)``."""
        out = np.empty_like(start)
        for lo in range(0, len(start), self._chunk):
            hi = min(lo + self._chunk, len(start))
            out[lo:hi] = self._train_chunk(start[lo:hi], batches[lo:hi], mask[lo:hi])
        return out

    def _train_chunk(self, start: np.ndarray, batches: np.ndarray, mask: np.ndarray) -> np.ndarray:
        cfg = self.config
        n_c = len(start)
        flat = torch.from_numpy(np.ascontiguousarray(start, dtype=np.float32))
        tensors: dict[str, torch.Tensor] = {}
        pos = 0
        for name, shape in zip(self.names, self.shapes, strict=True):
            size = math.prod(shape)
            tensors[name] = flat[:, pos : pos + size].reshape(n_c, *shape).clone()
            pos += size
        params = {n: tensors[n] for n in self._param_names}
        buffers = {n: tensors[n] for n in self._buffer_names if n in tensors}
        for n, b in self._int_buffers.items():
            buffers[n] = b.unsqueeze(0).repeat(n_c, *([1] * b.ndim)).clone()
        anchor = {n: p.clone() for n, p in params.items()} if cfg.mu > 0 else {}
        model = self.model
        model.train()

        def loss_fn(
            p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
        ) -> torch.Tensor:
            return nn.functional.cross_entropy(functional_call(model, (p, b), (x,)), y)

        g_fn = vmap(grad(loss_fn), in_dims=(0, 0, 0, 0), randomness="different")
        bt = torch.from_numpy(batches)
        mt = torch.from_numpy(mask.astype(np.float32))
        torch.manual_seed(int(batches[0, 0, 0]) + cfg.seed)
        with torch.no_grad():
            for t in range(batches.shape[1]):
                xb, yb = self._x[bt[:, t]], self._y[bt[:, t]]
                partial = bool((mt[:, t] < 1).any())
                saved = {n: b.clone() for n, b in buffers.items()} if partial else {}
                with torch.enable_grad():
                    if self._vectorize:
                        try:
                            grads = g_fn(params, buffers, xb, yb)
                        except Exception as exc:  # user models vmap cannot batch
                            log.warning("vmap failed (%s); training clients one by one", exc)
                            self._vectorize = False
                    if not self._vectorize:
                        grads = self._grads_loop(loss_fn, params, buffers, xb, yb)
                m = mt[:, t]
                for n, p in params.items():
                    g = grads[n]
                    if cfg.mu > 0:
                        g = g + cfg.mu * (p - anchor[n])
                    if cfg.weight_decay > 0:
                        g = g + cfg.weight_decay * p
                    p -= cfg.lr * m.view(-1, *([1] * (p.ndim - 1))) * g
                if partial:
                    keep = m > 0
                    for n, b in buffers.items():
                        b.copy_(torch.where(keep.view(-1, *([1] * (b.ndim - 1))), b, saved[n]))
        model.eval()
        return torch.cat([tensors[n].reshape(n_c, -1) for n in self.names], 1).numpy()

    @staticmethod
    def _grads_loop(
        loss_fn: Callable[..., torch.Tensor],
        params: dict[str, torch.Tensor],
        buffers: dict[str, torch.Tensor],
        xb: torch.Tensor,
        yb: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        per: list[dict[str, torch.Tensor]] = []
        for c in range(len(xb)):
            p = {n: v[c] for n, v in params.items()}
            b = {n: v[c] for n, v in buffers.items()}
            per.append(grad(loss_fn)(p, b, xb[c], yb[c]))
        return {n: torch.stack([g[n] for g in per]) for n in params}

    # ----------------------------------------------------------------- one aggregation step

    def _sample(self, r: int, sub: int) -> list[int]:
        k = self.config.clients_per_round
        pool = self.available
        if k is None or k >= len(pool):
            return list(pool)
        rng = np.random.default_rng([self.config.seed, r, sub, 2])
        return sorted(int(i) for i in rng.choice(pool, size=k, replace=False))

    def _local_round(
        self, r: int, sub: int, starts: dict[int, np.ndarray], tier: Tier, bytes_: dict[str, int]
    ) -> tuple[dict[str, tuple[np.ndarray, float, int]], dict[str, int], float, float]:
        """Sample, train, attack, compress, filter and aggregate per aggregator node.

        ``starts`` maps a client to its starting flat weights (the global or its
        edge model). Returns ({node: (aggregated delta, total weight, count)},
        counters, duration in s, energy in J).
        """
        cfg = self.config
        sampled = self._sample(r, sub)
        counts = {
            "sampled": len(sampled),
            "stragglers": 0,
            "dropped": 0,
            "rejected": 0,
            "malicious": 0,
        }
        rng = np.random.default_rng([cfg.seed, r, sub, 3])
        drop = rng.random(len(sampled)) < cfg.dropout
        # downlink: once per edge over the backhaul, once per device over the access link
        model_b = self._model_bytes()
        bytes_["edge_to_device"] += model_b * len(sampled)
        if tier is Tier.FLAT:
            for e in sorted({self.clients[i].edge for i in sampled}):
                bytes_["cloud_to_edge"] += model_b * len(self.edge_paths.get(e, ()))
        active: list[int] = []
        duration, energy = 0.0, 0.0
        for i, d in zip(sampled, drop, strict=True):
            if d:
                counts["dropped"] += 1
                continue
            t_i, compute_s, up_s = self._client_time(i)
            if self._deadline is not None and t_i > self._deadline:
                counts["stragglers"] += 1
                continue
            active.append(i)
            duration = max(duration, t_i)
            c = self.clients[i]
            energy += c.power_compute_w * compute_s + c.power_tx_w * up_s
        if self._deadline is not None and (counts["stragglers"] or counts["dropped"]):
            duration = self._deadline
        if not active:
            return {}, counts, duration, energy

        steps = [self._steps(i) for i in active]
        t_max = max(steps)
        batches = np.zeros((len(active), t_max, cfg.batch_size), dtype=np.int64)
        mask = np.zeros((len(active), t_max), dtype=np.float32)
        for row, (i, s) in enumerate(zip(active, steps, strict=True)):
            batches[row, :s] = self._batches(i, r, sub, s)
            batches[row, s:] = batches[row, 0]
            mask[row, :s] = 1.0
        start = np.stack([starts[i] for i in active])
        deltas = self._train(start, batches, mask) - start

        groups: dict[str, list[int]] = {}
        for row, i in enumerate(active):
            node = self.clients[i].edge if tier is Tier.EDGE else "cloud"
            groups.setdefault(node, []).append(row)
        result: dict[str, tuple[np.ndarray, float, int]] = {}
        for node in sorted(groups):
            rows = groups[node]
            honest = deltas[rows]
            bad = self.malicious[[active[j] for j in rows]]
            counts["malicious"] += int(bad.sum())
            if self.attack is not None and bad.any():
                arng = np.random.default_rng([cfg.seed, r, sub, 4, len(result)])
                honest = self.attack.poison_updates(honest, bad, arng).astype(np.float32)
            ups, ws, names = [], [], []
            for j, row in enumerate(rows):
                i = active[row]
                c = self.clients[i]
                u = self.strategy.client_update(honest[j], c, r)
                res = self.state.residuals.get(c.name) if cfg.compressor.uses_feedback else None
                blob, _sent, new_res = compress_with_feedback(self.compressor, u, res)
                bytes_["device_to_edge"] += len(blob)
                if tier is Tier.FLAT:  # the edge relays each update to the cloud
                    bytes_["edge_to_cloud"] += len(blob) * len(self.edge_paths.get(c.edge, ()))
                received = self.compressor.decode(blob, self.dim)
                if not np.isfinite(received).all():
                    counts["rejected"] += 1
                    log.warning("round %d: update of %s holds NaN/inf; rejected", r, c.name)
                    self.state.residuals.pop(c.name, None)
                    continue
                if cfg.compressor.uses_feedback:
                    self.state.residuals[c.name] = new_res
                ups.append(received)
                ws.append(float(len(self.parts[i])))
                names.append(c.name)
            if not ups:
                continue
            w = np.asarray(ws)
            ctx = AggregationContext(
                round=r,
                sub_round=sub,
                tier=tier,
                node=node,
                clients=tuple(names),
                f=self._f(len(ups)),
                rng=np.random.default_rng([cfg.seed, r, sub, 5, len(result)]),
            )
            result[node] = (
                self.strategy.aggregate(ups, w, ctx).astype(np.float32),
                float(w.sum()),
                len(ups),
            )
        return result, counts, duration, energy

    def _f(self, n: int) -> int:
        frac = self.config.byzantine_fraction
        if frac is None:
            return self.config.aggregation.f
        return math.floor(frac * n + 0.5)

    def _apply_server(self, delta: np.ndarray) -> None:
        self.state.weights, self.state.server_state = server_step(
            self.state.weights, delta, self.state.server_state, self.config.server
        )

    def _empty_bytes(self) -> dict[str, int]:
        return dict.fromkeys(TIERS, 0)

    def _flat_round(self, r: int) -> RoundRecord:
        bytes_ = self._empty_bytes()
        starts = {i: self.state.weights for i in self.available}
        res, counts, duration, energy = self._local_round(r, 0, starts, Tier.FLAT, bytes_)
        n_agg = 0
        if "cloud" in res:
            delta, _, n_agg = res["cloud"]
            self._apply_server(delta)
        else:
            log.warning("round %d: no update arrived; the global model is unchanged", r)
        return RoundRecord(r, None, None, counts["sampled"], n_agg, counts["stragglers"],
                           counts["dropped"], counts["rejected"], counts["malicious"], bytes_,
                           duration, energy)  # fmt: skip

    def _hier_round(self, r: int) -> RoundRecord:
        cfg = self.config
        bytes_ = self._empty_bytes()
        edges = sorted({self.clients[i].edge for i in self.available})
        model_b = self._model_bytes()
        edge_w = {e: self.state.weights.copy() for e in edges}
        edge_n = dict.fromkeys(edges, 0.0)
        for e in edges:
            bytes_["cloud_to_edge"] += model_b * len(self.edge_paths.get(e, ()))
        totals = {"sampled": 0, "stragglers": 0, "dropped": 0, "rejected": 0, "malicious": 0}
        duration, energy, n_agg = 0.0, 0.0, 0
        for sub in range(cfg.k2):
            starts = {i: edge_w[self.clients[i].edge] for i in self.available}
            res, counts, dur, en = self._local_round(r, sub, starts, Tier.EDGE, bytes_)
            for k in totals:
                totals[k] += counts[k]
            duration += dur
            energy += en
            for e, (delta, w, n) in res.items():
                edge_w[e] = (edge_w[e] + delta).astype(np.float32)
                edge_n[e] += w
                n_agg += n
        used = [e for e in edges if edge_n[e] > 0]
        backhaul = 0.0
        for e in used:
            hops = self.edge_paths.get(e, ())
            bytes_["edge_to_cloud"] += model_b * len(hops)
            t = sum(h.rtt_ms / 1000.0 + 8 * model_b / (h.bandwidth_mbps * 1e6) for h in hops)
            backhaul = max(backhaul, t)
        duration += 2 * backhaul
        if used:
            ctx = AggregationContext(
                round=r, sub_round=cfg.k2, tier=Tier.CLOUD, node="cloud", clients=tuple(used), f=0,
                rng=np.random.default_rng([cfg.seed, r, cfg.k2, 6]),
            )  # fmt: skip
            deltas = [edge_w[e] - self.state.weights for e in used]
            delta = self.strategy.aggregate(deltas, np.asarray([edge_n[e] for e in used]), ctx)
            self._apply_server(delta.astype(np.float32))
        else:
            log.warning("round %d: no edge server received updates; the model is unchanged", r)
        return RoundRecord(r, None, None, totals["sampled"], n_agg, totals["stragglers"],
                           totals["dropped"], totals["rejected"], totals["malicious"], bytes_,
                           duration, energy)  # fmt: skip
