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
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = [
    "LOCAL_PLAN",
    "NoCache",
    "Plan",
    "ProcessAll",
    "RedundancyFilter",
    "ResultCache",
    "StaticPlan",
    "Tier",
    "tensor_key",
]


@runtime_checkable
class ResultCache(Protocol):
    """Server-side reuse of results: ``get`` a stored result by key, ``put`` a new one.

    Plugs in at ``build_app(..., cache=...)``; the server looks up every infer
    request's ``tensor_key`` before queueing it and counts hits in /metrics.
    """

    def get(self, key: str) -> dict[str, np.ndarray] | None: ...

    def put(self, key: str, outputs: dict[str, np.ndarray]) -> None: ...


class NoCache:
    """The default: never hits, stores nothing."""

    enabled = False

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        return None

    def put(self, key: str, outputs: dict[str, np.ndarray]) -> None:
        return None


@runtime_checkable
class RedundancyFilter(Protocol):
    """Device-side skipping of near-duplicate inputs (``DeviceAgent(filter=...)``)."""

    def should_process(self, x: np.ndarray) -> bool: ...


class ProcessAll:
    """The default: every input is processed."""

    def should_process(self, x: np.ndarray) -> bool:
        return True


class Tier(StrEnum):
    DEVICE = "device"
    EDGE = "edge"
    CLOUD = "cloud"


@runtime_checkable
class Plan(Protocol):
    """Where a device's work runs: ``tier`` and, for a split, the head/tail models.

    ``split`` is None for whole-model placement; otherwise the device runs
    ``head_model`` locally and posts its output to the server's ``tail_model``.
    """

    @property
    def tier(self) -> Tier: ...

    @property
    def split(self) -> int | None: ...

    @property
    def tail_model(self) -> str | None: ...


@dataclass(frozen=True)
class StaticPlan:
    """A fixed plan (the default until ``edgeintel.offloading`` provides one)."""

    tier: Tier = Tier.DEVICE
    split: int | None = None
    tail_model: str | None = None


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
