"""A Flower (Message API) strategy applying edgeintel's aggregation rule, compressor and DP.

Devices reply with their *update* (new weights minus the global weights they were sent)
as a flat float32 vector compressed by the configured edgeintel compressor, carried as a
uint8 array in an ``ArrayRecord`` (so the wire size is the compressor's real output).
The strategy decodes the updates, combines them with :func:`combine_updates` — the same
aggregation rule (``edgeintel.training.aggregate``) or DP-FedAvg
(``edgeintel.training.dp``) the embedded engine uses — and applies the result with a
server learning rate.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from edgeintel.errors import DataError
from edgeintel.training.aggregate import AggregationConfig, aggregate
from edgeintel.training.compressors import CompressorConfig, make_compressor
from edgeintel.training.dp import DifferentialPrivacy, DPRoundRecord
from edgeintel.training.flower.settings import FlowerSettings
from edgeintel.training.weights import flatten, unflatten

__all__ = ["EdgeIntelStrategy", "combine_updates", "compressor_config"]

UPDATE_KEY = "update"


def compressor_config(settings: FlowerSettings) -> CompressorConfig:
    return CompressorConfig(name=settings.compressor, ratio=settings.compressor_ratio)


def combine_updates(
    updates: Sequence[np.ndarray],
    weights: Sequence[float],
    settings: FlowerSettings,
    dp: DifferentialPrivacy | None = None,
    rng: np.random.Generator | None = None,
    num_sampled: int | None = None,
) -> tuple[np.ndarray, DPRoundRecord | None]:
    """One aggregation step over flat updates: DP-FedAvg when ``dp`` is given, else the rule."""
    if dp is not None:
        if rng is None:
            raise ValueError("DP aggregation needs a random generator")
        mean, rec = dp.aggregate([[u] for u in updates], rng, num_sampled)
        return mean[0], rec
    cfg = AggregationConfig(rule=settings.aggregation, f=settings.byzantine_f)
    return aggregate([[u] for u in updates], np.asarray(weights, np.float64), cfg)[0], None


def _partition_id(content: RecordDict) -> int:
    return int(cast(int, content.metric_records["metrics"]["partition-id"]))


class EdgeIntelStrategy(FedAvg):
    """FedAvg's sampling and messaging with edgeintel's aggregation (rule / DP / compressor)."""

    def __init__(self, settings: FlowerSettings, shapes: Sequence[tuple[int, ...]]) -> None:
        super().__init__(
            fraction_train=settings.fraction_train,
            fraction_evaluate=settings.fraction_evaluate,
            min_train_nodes=settings.min_nodes,
            min_evaluate_nodes=settings.min_nodes,
            min_available_nodes=settings.min_nodes,
        )
        self.settings = settings
        self.shapes = [tuple(s) for s in shapes]
        self.compressor = make_compressor(compressor_config(settings))
        dp_cfg = settings.dp_config()
        self.dp: DifferentialPrivacy | None = None
        # DP noise from OS entropy: every client receives the run config (and its seed),
        # so a seeded generator would let any client regenerate and subtract the noise
        self.rng = np.random.default_rng(np.random.SeedSequence())
        self._global: np.ndarray | None = None
        self._num_nodes = 0
        self.records: list[dict[str, Any]] = []
        self._dp_cfg = dp_cfg
        self._sampled = 0
        self.record_dir = Path(settings.record_dir) if settings.record_dir else None

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._global = flatten(arrays.to_numpy_ndarrays())
        messages = list(super().configure_train(server_round, arrays, config, grid))
        self._num_nodes = len(list(grid.get_node_ids()))
        if self._dp_cfg is not None and self.dp is None:
            self.dp = DifferentialPrivacy(self._dp_cfg, population=max(self._num_nodes, 1))
            self.dp.check_budget(len(messages))
        if self.dp is not None and not self.dp.next_round_allowed(len(messages)):
            return []  # privacy budget spent: no more training rounds
        self._sampled = len(messages)
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        valid, _ = self._check_and_log_replies(replies, is_train=True, validate=False)
        if not valid or self._global is None:
            return None, None
        dim = self._global.size
        # Order by partition id so the result does not depend on reply arrival order.
        contents = sorted((m.content for m in valid), key=_partition_id)
        updates, weights, wire = [], [], 0
        for c in contents:
            blob = c.array_records[UPDATE_KEY].to_numpy_ndarrays()[0]
            if blob.dtype != np.uint8:
                raise DataError(f"update from partition {_partition_id(c)} is not a uint8 array")
            updates.append(self.compressor.decode(blob.tobytes(), dim))
            weights.append(float(cast(float, c.metric_records["metrics"]["num-examples"])))
            wire += blob.nbytes
        delta, rec = combine_updates(
            updates, weights, self.settings, self.dp, self.rng, num_sampled=self._sampled
        )
        new = (self._global + self.settings.server_lr * delta).astype(np.float32)
        info: dict[str, Any] = {
            "round": server_round,
            "num_updates": len(updates),
            "bytes_up": wire,
        }
        if rec is not None:
            info["epsilon"] = rec.epsilon
        self.records.append(info)
        if self.record_dir is not None:
            self.record_dir.mkdir(parents=True, exist_ok=True)
            np.savez(
                self.record_dir / f"round-{server_round}.npz",
                updates=np.stack(updates),
                weights=np.asarray(weights),
                global_before=self._global,
                global_after=new,
            )
        metrics = self.train_metrics_aggr_fn(contents, self.weighted_by_key)
        metrics["bytes-up"] = wire
        if rec is not None:
            metrics["epsilon"] = rec.epsilon
        return ArrayRecord(unflatten(new, self.shapes)), metrics

    def write_summary(self, extra: dict[str, Any]) -> None:
        if self.record_dir is None:
            return
        self.record_dir.mkdir(parents=True, exist_ok=True)
        summary = {"rounds": self.records, **extra}
        (self.record_dir / "summary.json").write_text(json.dumps(summary, indent=2))
