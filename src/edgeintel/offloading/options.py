"""One way to serve a device's requests (``Option``), costed by the one cost model.

The offloading planner and the fleet simulator both build their options with
``Option.costed`` (energy and objective value from a ``Breakdown``); the placement
policies of ``placement.py`` choose among them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgeintel.offloading.costs import (
    Breakdown,
    OffloadObjective,
    Power,
    device_energy_j,
    objective_value,
)

__all__ = ["Option"]


@dataclass(frozen=True)
class Option:
    """One way to serve a device's requests, costed without queueing.

    ``tier``: local, d2e, d2c, d2d or hybrid; ``target``: the server or helper
    device; ``server_ms``: work per request at ``target``; ``device_load_ms``:
    compute per request on each device resource (its own, and a D2D helper's)
    and transfer time per request on each ``link`` resource it crosses;
    ``value``: objective units; ``device_nodes``: layers run on the device;
    ``remote_fraction``: the share of requests that reach ``target`` (1 - exit
    probability with an early exit; their server work is already in ``server_ms``
    as an expectation), so only that share pays the server's queueing delay.
    """

    label: str
    tier: str
    target: str | None
    base: Breakdown
    energy_j: float
    value: float
    server_ms: float = 0.0
    device_load_ms: tuple[tuple[str, float], ...] = ()
    device_nodes: int = 0
    total_nodes: int = 0
    mask: np.ndarray | None = field(default=None, compare=False, repr=False)
    remote_fraction: float = 1.0

    @classmethod
    def costed(
        cls,
        label: str,
        tier: str,
        target: str | None,
        b: Breakdown,
        power: Power,
        objective: OffloadObjective | str,
        latency_weight: float,
        refs: tuple[float, float],
        server_ms: float,
        device_load_ms: tuple[tuple[str, float], ...] = (),
        device_nodes: int = 0,
        total_nodes: int = 0,
        mask: np.ndarray | None = None,
    ) -> Option:
        """An option costed from its breakdown ``b``: device energy (J) under ``power`` and the
        objective's value (``refs``: the reference latency in ms and energy in J); the one
        way the planner and the simulator build an option."""
        return cls(
            label=label,
            tier=tier,
            target=target,
            base=b,
            energy_j=device_energy_j(b, power),
            value=objective_value(b, power, objective, latency_weight, *refs),
            server_ms=server_ms,
            device_load_ms=device_load_ms,
            device_nodes=device_nodes,
            total_nodes=total_nodes,
            mask=mask,
        )
