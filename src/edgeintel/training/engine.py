"""Embedded federated engine: flat FedAvg/FedProx/FedAdam/FedAvgM and hierarchical HierFAVG.

Everything runs in process and is deterministic by seed: every random draw
comes from ``numpy.random.default_rng([seed, round, sub_round, purpose, ...])``,
so the round counter and the seed are the whole RNG state (a resumed engine
draws exactly what an uninterrupted one would). The one exception is
``config.secret_sampling`` (set when DP is on): the devices sampled each round
then come from OS entropy, since amplification by sampling assumes nobody can
predict the sample (a reproducible DP simulation keeps the seeded sample).

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

The pieces, by concern: ``rounds`` (config, round records, engine state),
``strategy`` (the seam: client transform, aggregation, round hooks),
``client_train`` (vmap local training), and ``edgeintel.network`` (bytes and
time per tier, the same model for both modes). This module orchestrates them.

Time and bytes (``edgeintel.network``): a device's round time is its exchange
with its aggregator -- the model down, ``steps * step_ms / compute_speed`` of
compute, its update up -- over its access link, plus, in flat rounds, its edge
server's backhaul to the cloud (which carries every update). A device whose
estimate exceeds the round deadline is cut before it trains (it still
downloaded the model). Dropouts: each sampled device vanishes mid-round with
probability ``dropout`` after its download. A hierarchical round adds the edge
servers' model exchange with the cloud. Bytes are the lengths of the real
payloads (see ``compressors``) and of the float32 model (``4 d``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeintel.errors import DataError, TrainingError
from edgeintel.models.train import predict_logits
from edgeintel.network import Exchange, Hop, Traffic
from edgeintel.tasks import TaskKind, make_task
from edgeintel.threads import thread_limit
from edgeintel.training.attacks import Attack, make_attack
from edgeintel.training.client_train import LocalTrainer
from edgeintel.training.compressors import (
    Compressor,
    compress_with_feedback,
    compress_with_momentum,
    make_compressor,
)
from edgeintel.training.rounds import (
    ClientSpec,
    EngineState,
    FederatedConfig,
    FlMode,
    RoundRecord,
    Tier,
)
from edgeintel.training.server_opt import server_step
from edgeintel.training.strategy import AggregationContext, Strategy
from edgeintel.training.weights import flatten, get_weights, set_weights, unflatten

__all__ = ["FederatedEngine", "local_batches"]

#: samples per forward pass when the engine scores a round (test and validation)
EVAL_BATCH = 64

log = logging.getLogger(__name__)

#: |weight| beyond which the global model has diverged (finite, but no network that
#: learns holds such a value; a huge server_lr gets there while the run "completes")
DIVERGED_WEIGHT = 1e8


def local_batches(
    idx: np.ndarray, steps: int, batch_size: int, seed: int, r: int, sub: int, client: int
) -> np.ndarray:
    """(steps, batch_size) sample indices a device trains on in round ``r`` (sub-round
    ``sub``): reshuffled passes over its shard ``idx``, drawn from
    ``default_rng([seed, r, sub, 1, client])``. The engine's one batch order; a peer
    benchmark's plain loop uses it to train on exactly the same batches."""
    rng = np.random.default_rng([seed, r, sub, 1, client])
    need = steps * batch_size
    reps = math.ceil(need / len(idx))
    order = np.concatenate([rng.permutation(idx) for _ in range(reps)])[:need]
    return order.reshape(steps, batch_size)


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
        task: TaskKind | None = None,
        x_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
    ) -> None:
        if len(parts) != len(clients):
            raise DataError(f"{len(parts)} data shards for {len(clients)} clients")
        if len(x_train) != len(y_train):
            raise DataError(f"{len(x_train)} training samples but {len(y_train)} labels")
        if len(y_test) == 0:
            raise DataError("the test set is empty")
        self.model = model
        self.config = config
        self.task = task if task is not None else make_task("classification")
        self.clients = list(clients)
        self.parts = [np.asarray(p, dtype=np.int64) for p in parts]
        self.num_classes = int(
            num_classes if num_classes is not None else int(np.max(y_train, initial=0)) + 1
        )
        self.edge_paths = {k: tuple(v) for k, v in (edge_paths or {}).items()}
        self.strategy = strategy or Strategy(config.aggregation)
        self.compressor: Compressor = make_compressor(config.compressor)
        self.attack: Attack | None = make_attack(config.attack) if config.attack else None
        self.x_test, self.y_test = x_test, np.asarray(y_test, dtype=self.task.label_dtype)
        # the split the exported round is chosen on (never a device's data, never the test)
        self.x_val = x_val if y_val is not None and len(y_val) else None
        self.y_val = (
            np.asarray(y_val, dtype=self.task.label_dtype) if self.x_val is not None else None
        )

        self.no_data = [
            c.name for c, p in zip(self.clients, self.parts, strict=True) if len(p) == 0
        ]
        for name in self.no_data:
            log.warning("device %s has no training data; it is left out of training", name)
        self.available = [i for i, p in enumerate(self.parts) if len(p) > 0]
        if not self.available:
            raise DataError("no device has training data")

        # malicious devices: fixed for the whole run, drawn among devices with data
        self.malicious = np.zeros(len(self.clients), dtype=bool)
        if self.attack is not None and config.attack is not None:
            n_bad = round(config.attack.fraction * len(self.available))
            rng = np.random.default_rng([config.seed, 0xA77AC])
            bad = rng.choice(self.available, size=n_bad, replace=False)
            self.malicious[bad] = True
        y = np.asarray(y_train, dtype=self.task.label_dtype).copy()
        if self.attack is not None:
            for i in np.flatnonzero(self.malicious):
                y[self.parts[i]] = self.attack.poison_labels(y[self.parts[i]], self.num_classes)
        self.trainer = LocalTrainer(
            model,
            x_train,
            y,
            config.lr,
            config.mu,
            config.weight_decay,
            config.chunk,
            config.seed,
            task=self.task,
            bn_stats=config.bn_stats,
        )
        self.shapes = self.trainer.shapes
        self.dim = int(sum(math.prod(s) for s in self.shapes))
        # where the flat vector holds running statistics (BatchNorm means and variances):
        # the server averages them, its optimizer (momentum, Adam) moves only parameters
        buffers = {n for n, _ in model.named_buffers()}
        self._stats = np.concatenate(
            [
                np.full(math.prod(sh), n in buffers)
                for n, sh in zip(self.trainer.names, self.shapes, strict=True)
            ]
            or [np.zeros(0, dtype=bool)]
        )

        self.state = EngineState(
            round=0, weights=flatten(get_weights(model)), step_ms=config.step_ms
        )
        self._deadline: float | None = None
        self._secret_rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence()))

    # ----------------------------------------------------------------- public

    @property
    def weights(self) -> list[np.ndarray]:
        """The global model as arrays (``get_weights`` order)."""
        return [a.copy() for a in unflatten(self.state.weights, self.shapes)]

    def global_model(self, weights: np.ndarray | None = None) -> nn.Module:
        """The wrapped model with the current global weights (or flat ``weights``) loaded.

        BatchNorm running variances are averaged like every float entry; under DP noise
        an average can come out negative (a NaN in eval mode and in ONNX export), so they
        are clamped at 0 here (post-processing: no privacy cost, the state is untouched).
        """
        flat = self.state.weights if weights is None else weights
        set_weights(self.model, unflatten(flat, self.shapes))
        with torch.no_grad():
            for m in self.model.modules():
                if isinstance(m, nn.modules.batchnorm._NormBase) and m.running_var is not None:
                    m.running_var.clamp_(min=0.0)
        self.model.eval()
        return self.model

    def selected_model(self) -> tuple[nn.Module, int]:
        """(the model to export, its round): the round best on the validation split
        (``x_val``; ties keep the earlier round), else the last round."""
        st = self.state
        if st.best_weights is None or st.best_round is None:
            return self.global_model(), st.round
        return self.global_model(st.best_weights), st.best_round

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
            if not self.strategy.should_continue(self.state):
                log.info("strategy stopped training after round %d", self.state.round)
                break
            rec = self.run_round()
            if on_round is not None:
                on_round(rec)
        return self.state.history

    def evaluate(
        self, x: np.ndarray | None = None, y: np.ndarray | None = None
    ) -> tuple[float | None, float]:
        """(the task kind's headline metric, e.g. accuracy in [0, 1] or RMSE in the target's
        unit; None where undefined, and the kind's mean loss) of the global model on the
        test set (or on ``x``, ``y``)."""
        x, y = (self.x_test, self.y_test) if x is None or y is None else (x, y)
        # batches of 64: the default scenario's width-48 CNN scored 1,780 digits in 1.38 s
        # at 64 vs 2.24 s at 512 (activations that fit the cache), every round
        out = predict_logits(self.global_model(), x, EVAL_BATCH)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        loss = float(self.task.loss(torch.from_numpy(out), self.task.target(xt, yt)))
        figures = self.task.evaluate(self.task.predict(out, x), y)
        return figures.get(self.task.metric), loss

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
        peak = float(np.abs(self.state.weights).max(initial=0.0))
        if peak > DIVERGED_WEIGHT:
            raise TrainingError(
                f"federated training diverged in round {r}: a global weight reached {peak:.3g} "
                f"(client lr {cfg.lr:g}, server lr {cfg.server.server_lr:g}); lower the "
                "learning rates"
            )
        if r % cfg.eval_every == 0 or r == cfg.rounds:
            rec.accuracy, rec.loss = self.evaluate()
        if self.x_val is not None and self.y_val is not None:
            val = rec.val_metric = self.evaluate(self.x_val, self.y_val)[0]
            best = self.state.best_val
            if val is not None and (best is None or self.task.better(val, best)):
                self.state.best_round, self.state.best_val = r, val
                self.state.best_weights = self.state.weights.copy()
        self.state.round = r
        self.state.history.append(rec)
        self.state.strategy_state = self.strategy.state_dict()
        self.strategy.on_round_end(self.state)
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

    def _backhaul(self, node: str) -> tuple[Hop, ...]:
        """Hops from ``node`` up to the cloud (empty for the cloud itself)."""
        return self.edge_paths.get(node, ())

    def _exchange(self, i: int, tier: Tier) -> Exchange:
        """Client ``i``'s exchange with its aggregator: the cloud in flat rounds (over its
        access link and its edge's backhaul), its edge server in hierarchical ones."""
        c = self.clients[i]
        step_ms = self.state.step_ms or 0.0
        return Exchange(
            down_bytes=self._model_bytes(),
            up_bytes=self._up_bytes_estimate(),
            access=Hop(c.bandwidth_mbps, c.rtt_ms),
            backhaul=self._backhaul(c.edge) if tier is Tier.FLAT else (),
            compute_s=self._steps(i) * step_ms / 1000.0 / c.compute_speed,
        )

    def _tier(self) -> Tier:
        return Tier.EDGE if self.config.mode is FlMode.HIERARCHICAL else Tier.FLAT

    def _compute_deadline(self) -> float:
        if self.state.step_ms is None:
            i = self.available[0]
            self.state.step_ms = self.trainer.measure_step_ms(
                self.state.weights, int(self.parts[i][0]), self.config.batch_size
            )
        if self.config.deadline_s is not None:
            return self.config.deadline_s
        times = [self._exchange(i, self._tier()).time_s for i in self.available]
        return float(np.quantile(times, self.config.deadline_quantile or 1.0))

    # ----------------------------------------------------------------- local training

    def _batches(self, i: int, r: int, sub: int, steps: int) -> np.ndarray:
        """(steps, batch) global sample indices: reshuffled passes over the device's shard."""
        return local_batches(self.parts[i], steps, self.config.batch_size, self.config.seed,
                             r, sub, i)  # fmt: skip

    # ----------------------------------------------------------------- one aggregation step

    def _sample(self, r: int, sub: int) -> list[int]:
        k = self.config.clients_per_round
        pool = self.available
        if k is None or k >= len(pool):
            return list(pool)
        # secret sampling (DP): fresh OS entropy (SeedSequence() reads it); else the seed
        rng = (
            self._secret_rng
            if self.config.secret_sampling
            else np.random.default_rng([self.config.seed, r, sub, 2])
        )
        return sorted(int(i) for i in rng.choice(pool, size=k, replace=False))

    def _local_round(
        self, r: int, sub: int, starts: dict[int, np.ndarray], tier: Tier, traffic: Traffic
    ) -> tuple[dict[str, tuple[np.ndarray, float, int]], dict[str, int], float, float]:
        """Sample, train, attack, compress, filter and aggregate per aggregator node.

        ``starts`` maps a client to its starting flat weights (the global or its
        edge model). Returns ({node: (aggregated delta, total weight, count)},
        counters, duration in s, energy in J).
        """
        cfg = self.config
        sampled = self._sample(r, sub)

        def relay(edge: str) -> tuple[Hop, ...]:
            return self._backhaul(edge) if tier is Tier.FLAT else ()

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
        traffic.model_to_devices(model_b, len(sampled))
        if tier is Tier.FLAT:
            edges = sorted({self.clients[i].edge for i in sampled})
            traffic.model_to_edges(model_b, [self._backhaul(e) for e in edges])
        active: list[int] = []
        duration, energy = 0.0, 0.0
        for i, d in zip(sampled, drop, strict=True):
            if d:
                counts["dropped"] += 1
                continue
            ex = self._exchange(i, tier)
            if self._deadline is not None and ex.time_s > self._deadline:
                counts["stragglers"] += 1
                continue
            active.append(i)
            duration = max(duration, ex.time_s)
            c = self.clients[i]
            energy += c.power_compute_w * ex.compute_s + c.power_tx_w * ex.upload_s
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
        deltas = self.trainer.train(start, batches, mask) - start

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
                new_vel = None
                if cfg.compressor.momentum > 0:
                    blob, _sent, new_res, new_vel = compress_with_momentum(
                        self.compressor, u, res, self.state.momenta.get(c.name),
                        cfg.compressor.momentum,
                    )  # fmt: skip
                else:
                    blob, _sent, new_res = compress_with_feedback(self.compressor, u, res)
                # in flat rounds the edge relays each update to the cloud
                traffic.update_from_device(len(blob), relay=relay(c.edge))
                received = self.compressor.decode(blob, self.dim)
                if not np.isfinite(received).all():
                    counts["rejected"] += 1
                    log.warning("round %d: update of %s holds NaN/inf; rejected", r, c.name)
                    self.state.residuals.pop(c.name, None)
                    self.state.momenta.pop(c.name, None)
                    continue
                if cfg.compressor.uses_feedback:
                    self.state.residuals[c.name] = new_res
                if new_vel is not None:
                    self.state.momenta[c.name] = new_vel
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
        averaged = self.state.weights[self._stats] + delta[self._stats]
        new, self.state.server_state = server_step(
            self.state.weights, delta, self.state.server_state, self.config.server
        )
        # running statistics are the clients' average, not a direction to accelerate:
        # FedAvgM's momentum on BatchNorm variances sent the default scenario to 0.36
        new[self._stats] = averaged
        self.state.weights = new

    def _flat_round(self, r: int) -> RoundRecord:
        traffic = Traffic()
        starts = {i: self.state.weights for i in self.available}
        res, counts, duration, energy = self._local_round(r, 0, starts, Tier.FLAT, traffic)
        n_agg = 0
        if "cloud" in res:
            delta, _, n_agg = res["cloud"]
            self._apply_server(delta)
        else:
            log.warning("round %d: no update arrived; the global model is unchanged", r)
        return RoundRecord(r, None, None, counts["sampled"], n_agg, counts["stragglers"],
                           counts["dropped"], counts["rejected"], counts["malicious"],
                           traffic.bytes, duration, energy)  # fmt: skip

    def _hier_round(self, r: int) -> RoundRecord:
        cfg = self.config
        traffic = Traffic()
        edges = sorted({self.clients[i].edge for i in self.available})
        model_b = self._model_bytes()
        edge_w = {e: self.state.weights.copy() for e in edges}
        edge_n = dict.fromkeys(edges, 0.0)
        traffic.model_to_edges(model_b, [self._backhaul(e) for e in edges])
        totals = {"sampled": 0, "stragglers": 0, "dropped": 0, "rejected": 0, "malicious": 0}
        duration, energy, n_agg = 0.0, 0.0, 0
        for sub in range(cfg.k2):
            starts = {i: edge_w[self.clients[i].edge] for i in self.available}
            res, counts, dur, en = self._local_round(r, sub, starts, Tier.EDGE, traffic)
            for k in totals:
                totals[k] += counts[k]
            duration += dur
            energy += en
            for e, (delta, w, n) in res.items():
                edge_w[e] = (edge_w[e] + delta).astype(np.float32)
                edge_n[e] += w
                n_agg += n
        used = [e for e in edges if edge_n[e] > 0]
        traffic.models_to_cloud(model_b, [self._backhaul(e) for e in used])
        # each edge server exchanges its model with the cloud over its backhaul
        exchanges = [Exchange(model_b, model_b, backhaul=self._backhaul(e)) for e in used]
        duration += max((ex.time_s for ex in exchanges), default=0.0)
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
                           totals["dropped"], totals["rejected"], totals["malicious"],
                           traffic.bytes, duration, energy)  # fmt: skip
