"""The strategy seam: the pluggable part of a federated round.

``client_update`` transforms a device's flat update before compression;
``aggregate`` combines the decoded updates at an aggregator (``ctx.tier`` says
which); ``should_continue`` / ``on_round_end`` see the engine's ``EngineState``
before and after each round (budgets, checkpointing) -- never the engine itself,
as a Flower strategy never sees the server; ``state_dict``/``load_state_dict`` let
a strategy's own state ride in ``EngineState``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from edgeintel.training.aggregate import AggregationConfig, aggregate, weighted_mean
from edgeintel.training.rounds import ClientSpec, EngineState, Tier

__all__ = ["AggregationContext", "Strategy"]


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

    def should_continue(self, state: EngineState) -> bool:
        """Checked by ``run`` before every round with the engine's state; False ends
        training (e.g. DP budget spent)."""
        return True

    def on_round_end(self, state: EngineState) -> None:
        """Called after every round with the engine's up-to-date state (the round just
        run is ``state.round`` and the last entry of ``state.history``)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state
