"""The offloading cost model: pure functions over numbers (ms, bytes, Mbit/s, W, J).

One request's end-to-end latency when a device runs the head of a model and a
server the tail::

    latency = device compute + serialization + uplink (bytes*8 / bandwidth) + RTT
              + queueing at the server + server compute + downlink

and the device's energy, drawn from its battery::

    energy = P_compute * (device compute + serialization) + P_tx * uplink
             + P_idle * (RTT + queueing + server compute + downlink)

With an early exit (BranchyNet) the device runs up to the exit for every
request and a fraction ``p_exit`` stops there; only the others pay the rest
(``expected_exit_breakdown``): every component after the exit is weighted by
``1 - p_exit``. Energy is linear in the components, so the energy of the
expected breakdown is the expected energy.

Queueing follows M/M/c (Erlang C). Objectives: ``latency`` (ms), ``energy``
(J) or ``weighted`` (w * latency / ref_latency + (1 - w) * energy / ref_energy,
both normalised by the all-local values).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from edgeintel.errors import ConfigError

__all__ = [
    "Breakdown",
    "LinkState",
    "OffloadObjective",
    "Power",
    "breakdown",
    "device_energy_j",
    "erlang_c",
    "expected_exit_breakdown",
    "mmc_wait_ms",
    "objective_value",
    "transfer_ms",
]


class OffloadObjective(StrEnum):
    LATENCY = "latency"
    ENERGY = "energy"
    WEIGHTED = "weighted"


@dataclass(frozen=True)
class LinkState:
    """A device's path to a server right now: up/down Mbit/s and round-trip ms; 0 Mbit/s = down."""

    uplink_mbps: float
    rtt_ms: float = 0.0
    downlink_mbps: float | None = None

    def __post_init__(self) -> None:
        if self.uplink_mbps < 0 or (self.downlink_mbps is not None and self.downlink_mbps < 0):
            raise ConfigError(f"bandwidth must be >= 0 Mbit/s, got {self.uplink_mbps}")
        if self.rtt_ms < 0:
            raise ConfigError(f"rtt_ms must be >= 0, got {self.rtt_ms}")

    @property
    def down_mbps(self) -> float:
        return self.uplink_mbps if self.downlink_mbps is None else self.downlink_mbps

    @property
    def up(self) -> bool:
        return self.uplink_mbps > 0 and self.down_mbps > 0


@dataclass(frozen=True)
class Power:
    """A device's power draw in watts while computing, transmitting and waiting."""

    compute_w: float
    tx_w: float
    idle_w: float


def transfer_ms(nbytes: float, bandwidth_mbps: float) -> float:
    """Milliseconds to send ``nbytes`` bytes at ``bandwidth_mbps`` Mbit/s (10^6 bit/s)."""
    if nbytes <= 0:
        return 0.0
    if bandwidth_mbps <= 0:
        raise ConfigError(f"bandwidth must be > 0 Mbit/s to send data, got {bandwidth_mbps}")
    return nbytes * 8.0 / (bandwidth_mbps * 1e6) * 1e3


def erlang_c(servers: int, offered_load: float) -> float:
    """Probability that an arrival waits in M/M/c with ``offered_load`` a = lambda/mu Erlangs."""
    if servers < 1:
        raise ConfigError(f"servers must be >= 1, got {servers}")
    if offered_load < 0:
        raise ConfigError(f"offered load must be >= 0, got {offered_load}")
    if offered_load >= servers:
        return 1.0
    # stable recursion on the Erlang B formula, then C from B
    b = 1.0
    for k in range(1, servers + 1):
        b = offered_load * b / (k + offered_load * b)
    rho = offered_load / servers
    return b / (1.0 - rho + rho * b)


def mmc_wait_ms(arrival_hz: float, service_ms: float, servers: int) -> float:
    """Mean queueing delay (ms, before service) in M/M/c; ``inf`` when utilisation >= 1."""
    if service_ms <= 0 or arrival_hz <= 0:
        return 0.0
    a = arrival_hz * service_ms / 1000.0
    if a >= servers:
        return math.inf
    return erlang_c(servers, a) * service_ms / (servers - a)


@dataclass(frozen=True)
class Breakdown:
    """One request's latency components in ms (all 0 except ``device_ms`` when local)."""

    device_ms: float
    serialize_ms: float = 0.0
    uplink_ms: float = 0.0
    rtt_ms: float = 0.0
    queue_ms: float = 0.0
    server_ms: float = 0.0
    downlink_ms: float = 0.0

    @property
    def latency_ms(self) -> float:
        return (
            self.device_ms
            + self.serialize_ms
            + self.uplink_ms
            + self.rtt_ms
            + self.queue_ms
            + self.server_ms
            + self.downlink_ms
        )

    @property
    def waiting_ms(self) -> float:
        """Time the device idles waiting for the server's answer."""
        return self.rtt_ms + self.queue_ms + self.server_ms + self.downlink_ms


def expected_exit_breakdown(exit_ms: float, p_exit: float, rest: Breakdown) -> Breakdown:
    """Expected latency components (ms) of a request with an early exit.

    ``exit_ms``: device compute up to and including the exit head (every request);
    ``p_exit``: probability that a request stops there; ``rest``: the components of
    the continuation (more device layers, serialization, link, queue, server, ...),
    paid by the ``1 - p_exit`` of requests that do not exit.
    """
    if not 0.0 <= p_exit <= 1.0:
        raise ConfigError(f"exit probability must be in [0, 1], got {p_exit}")
    if exit_ms < 0:
        raise ConfigError(f"exit_ms must be >= 0, got {exit_ms}")
    q = 1.0 - p_exit
    return Breakdown(
        device_ms=exit_ms + q * rest.device_ms,
        serialize_ms=q * rest.serialize_ms,
        uplink_ms=q * rest.uplink_ms,
        rtt_ms=q * rest.rtt_ms,
        queue_ms=q * rest.queue_ms,
        server_ms=q * rest.server_ms,
        downlink_ms=q * rest.downlink_ms,
    )


def breakdown(
    device_ms: float,
    up_bytes: float,
    down_bytes: float,
    server_ms: float,
    link: LinkState | None,
    queue_ms: float = 0.0,
    serialize_ms: float = 0.0,
) -> Breakdown:
    """Latency components of one request; ``link=None`` or no server work means local."""
    if link is None or (server_ms == 0 and up_bytes == 0):
        return Breakdown(device_ms=device_ms)
    return Breakdown(
        device_ms=device_ms,
        serialize_ms=serialize_ms,
        uplink_ms=transfer_ms(up_bytes, link.uplink_mbps),
        rtt_ms=link.rtt_ms,
        queue_ms=queue_ms,
        server_ms=server_ms,
        downlink_ms=transfer_ms(down_bytes, link.down_mbps),
    )


def device_energy_j(b: Breakdown, power: Power) -> float:
    """Joules drawn from the device's battery for one request."""
    return (
        power.compute_w * (b.device_ms + b.serialize_ms)
        + power.tx_w * b.uplink_ms
        + power.idle_w * b.waiting_ms
    ) / 1000.0


def objective_value(
    b: Breakdown,
    power: Power,
    objective: OffloadObjective | str,
    latency_weight: float = 0.5,
    ref_latency_ms: float = 1.0,
    ref_energy_j: float = 1.0,
) -> float:
    """The value to minimise: ms, J, or the normalised weighted mix (dimensionless)."""
    obj = OffloadObjective(objective)
    if obj is OffloadObjective.LATENCY:
        return b.latency_ms
    if obj is OffloadObjective.ENERGY:
        return device_energy_j(b, power)
    if not 0 <= latency_weight <= 1:
        raise ConfigError(f"latency_weight must be in [0, 1], got {latency_weight}")
    return (
        latency_weight * b.latency_ms / ref_latency_ms
        + (1 - latency_weight) * device_energy_j(b, power) / ref_energy_j
    )
