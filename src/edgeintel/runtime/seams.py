"""Seams for the components the runtime wires in: result cache, redundancy filter, plan.

The real implementations live in ``edgeintel.caching`` (a redundancy filter on
the device, a result cache on the server) and ``edgeintel.offloading`` (a
per-device plan: tier and split point, with split head/tail ONNX models).
They are plain objects with no clock and no sockets; the runtime only needs
the small protocols below. The defaults here do nothing special: no cache,
process every input, run everything on the device.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "LOCAL_PLAN",
    "Decision",
    "ExecutionTier",
    "NoCache",
    "Plan",
    "ProcessAll",
    "RedundancyFilter",
    "ResultCache",
    "StaticPlan",
    "tensor_key",
]


@runtime_checkable
class ResultCache(Protocol):
    """Server-side reuse of results: ``get`` a stored result, ``put`` a new one.

    ``key`` is the exact key (``tensor_key``: sha256 of model, version and input
    bytes); ``features`` is the input's feature vector for an approximate tier
    (None when the input has none, e.g. a batch of several rows). Plugs in at
    ``build_app(..., cache=...)``; the server looks up every infer request before
    queueing it. The tier that answered a hit is read from the cache's ``stats``
    (a ``caching.CacheStats``: ``exact_hits``, ``approx_hits``) when it has one
    (``runtime.wiring.ServerResultCache``, ``caching.redis_cache.RedisResultCache``),
    and counted as ``exact`` otherwise.
    """

    def get(self, key: str, features: np.ndarray | None = None) -> dict[str, np.ndarray] | None: ...

    def put(
        self, key: str, outputs: dict[str, np.ndarray], features: np.ndarray | None = None
    ) -> None: ...


class NoCache:
    """The default: never hits, stores nothing."""

    enabled = False

    def get(self, key: str, features: np.ndarray | None = None) -> dict[str, np.ndarray] | None:
        return None

    def put(
        self, key: str, outputs: dict[str, np.ndarray], features: np.ndarray | None = None
    ) -> None:
        return None


@runtime_checkable
class RedundancyFilter(Protocol):
    """Device-side skipping of near-duplicate inputs (``DeviceAgent(filter=...)``)."""

    def should_process(self, x: np.ndarray) -> bool: ...


class ProcessAll:
    """The default: every input is processed."""

    def should_process(self, x: np.ndarray) -> bool:
        return True


class ExecutionTier(StrEnum):
    """Where one request runs (named apart from ``training.rounds.Tier``, the tiers of
    hierarchical federated rounds)."""

    DEVICE = "device"
    EDGE = "edge"
    CLOUD = "cloud"
    D2D = "d2d"  # a neighbouring device runs it, reached over the D2D link (agent ``peers``)


@dataclass(frozen=True)
class Decision:
    """Where one request runs: ``tier``, the serving ``target`` node (None: the device's own
    server), and for a split the ``tail_model`` on the server and the device's ``head``
    (an ONNX Runtime session whose outputs are the tail's inputs). ``label`` names the
    option (the offloading planner's labels: ``local``, ``d2e:micro-1``, ``hybrid:...``)."""

    tier: ExecutionTier
    label: str = "local"
    target: str | None = None
    tail_model: str | None = None
    head: Any = field(default=None, compare=False, repr=False)


@runtime_checkable
class Plan(Protocol):
    """Where a device's work runs, decided per request.

    ``decide(unreachable)`` gets the targets that failed lately (node names) and
    returns the ``Decision`` for the next request; a static plan ignores it, the
    adaptive one (``runtime.wiring.AdaptivePlan``) re-costs its options under the link
    state the agent observes now. ``switches`` lists (time s, old label, new label).
    """

    def decide(self, unreachable: frozenset[str] = frozenset()) -> Decision: ...


@dataclass(frozen=True)
class StaticPlan:
    """A fixed tier for every request (``placement: device | edge | cloud``).

    For a static split, ``tail_model`` names the server's tail and the agent's
    ``head_session`` runs the head.
    """

    tier: ExecutionTier = ExecutionTier.DEVICE
    target: str | None = None
    tail_model: str | None = None

    @classmethod
    def for_tier(cls, tier: ExecutionTier | str, attach: str, cloud: str) -> StaticPlan:
        """The static plan of a device attached to edge server ``attach``: ``cloud``
        targets the cloud node (the edge relays it), ``edge`` its own edge server.
        ``ValueError`` for an unknown tier."""
        t = ExecutionTier(tier)
        if t is ExecutionTier.D2D:
            raise ValueError("a D2D plan names its helper device; use StaticPlan(D2D, target=...)")
        target = {ExecutionTier.CLOUD: cloud, ExecutionTier.EDGE: attach}.get(t)
        return cls(t, target=target)

    def decide(self, unreachable: frozenset[str] = frozenset()) -> Decision:
        if self.tier is ExecutionTier.DEVICE:
            return Decision(ExecutionTier.DEVICE)
        label = f"{self.tier}:{self.target}" if self.target else str(self.tier)
        return Decision(self.tier, label, self.target, self.tail_model)


LOCAL_PLAN = StaticPlan()


def tensor_key(model: str, version: str, feeds: dict[str, np.ndarray]) -> str:
    """Exact cache key: sha256 over model, version and each input's name, dtype, shape, bytes."""
    h = hashlib.sha256(f"{model}\0{version}".encode())
    for name in sorted(feeds):
        a = np.ascontiguousarray(feeds[name])
        h.update(f"\0{name}\0{a.dtype.str}\0{a.shape}".encode())
        if a.dtype.kind == "O":
            for item in a.reshape(-1):
                h.update(len(item).to_bytes(4, "little") + bytes(item))
        else:
            h.update(a.tobytes())
    return h.hexdigest()
