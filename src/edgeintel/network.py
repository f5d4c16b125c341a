"""The network model: how long a transfer takes and how many bytes cross each tier.

Pure functions and small value objects, shared by the federated engine (flat and
hierarchical rounds alike) and reusable by a discrete-event simulator, which
only has to call them at simulated times.

The model, in one place:

* a transfer of ``n`` bytes over one ``Hop`` takes ``rtt_ms / 1000 + 8 n /
  (bandwidth_mbps 10^6)`` seconds; over a path, store-and-forward, the sum of
  its hops;
* a participant's *exchange* with its aggregator is: the model comes down the
  path, the participant computes, its update goes up the same path. A device in a
  flat round exchanges with the cloud over its access link *and* its edge
  server's backhaul (which carries every update); in a hierarchical sub-round
  it exchanges with its edge server over the access link; at a hierarchical
  cloud aggregation each edge server exchanges its model with the cloud over
  the backhaul (no compute);
* transfers do not contend (each has its link to itself), as in the flat and
  hierarchical formulas of the FL literature; a simulator can add queueing.

Bytes are counted per tier (``TIERS``): device -> edge and edge -> device on
access links, edge -> cloud and cloud -> edge once per backhaul hop crossed.

Units: bytes; bandwidth in Mbit/s; RTT in ms; time in s.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from edgeintel.topology import LinkSpec

__all__ = [
    "TIERS",
    "Exchange",
    "Hop",
    "Traffic",
    "hop_at",
    "path_s",
    "transfer_s",
]

TIERS = ("device_to_edge", "edge_to_device", "edge_to_cloud", "cloud_to_edge")


@dataclass(frozen=True)
class Hop:
    """One link of a path: an access link or a backhaul link on the way to the cloud."""

    bandwidth_mbps: float
    rtt_ms: float = 0.0


def hop_at(link: LinkSpec, t_s: float) -> Hop:
    """The hop a (possibly time-varying) link is at time ``t_s`` (bandwidth 0: an outage)."""
    bandwidth, rtt, _loss = link.at(t_s)
    return Hop(bandwidth, rtt)


def transfer_s(n_bytes: float, hop: Hop) -> float:
    """Seconds to send ``n_bytes`` over ``hop``: one RTT plus serialisation (inf in an outage)."""
    if hop.bandwidth_mbps <= 0:
        return math.inf
    return hop.rtt_ms / 1000.0 + 8.0 * n_bytes / (hop.bandwidth_mbps * 1e6)


def path_s(n_bytes: float, hops: Sequence[Hop]) -> float:
    """Seconds to send ``n_bytes`` along ``hops``, store-and-forward (0 for an empty path)."""
    return sum(transfer_s(n_bytes, h) for h in hops)


@dataclass(frozen=True)
class Exchange:
    """One participant's round trip with its aggregator.

    ``access``: the participant's own link (``None`` for an edge server talking to
    the cloud); ``backhaul``: the hops beyond it up to the aggregator.
    """

    down_bytes: int
    up_bytes: int
    access: Hop | None = None
    backhaul: tuple[Hop, ...] = ()
    compute_s: float = 0.0

    @property
    def hops(self) -> tuple[Hop, ...]:
        return ((self.access,) if self.access is not None else ()) + self.backhaul

    @property
    def upload_s(self) -> float:
        """Serialisation time of the update on the access link (the device's transmit energy)."""
        if self.access is None:
            return 0.0
        return 8.0 * self.up_bytes / (self.access.bandwidth_mbps * 1e6)

    @property
    def time_s(self) -> float:
        """Model down, compute, update up: when the update reaches the aggregator."""
        return (
            path_s(self.down_bytes, self.hops) + self.compute_s + path_s(self.up_bytes, self.hops)
        )


@dataclass
class Traffic:
    """Bytes that crossed each tier (``TIERS``), added transfer by transfer."""

    bytes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TIERS, 0))

    def model_to_edges(self, model_bytes: int, backhauls: Iterable[Sequence[Hop]]) -> None:
        """The cloud sends the model to edge servers, once per backhaul hop."""
        for hops in backhauls:
            self.bytes["cloud_to_edge"] += model_bytes * len(hops)

    def model_to_devices(self, model_bytes: int, devices: int) -> None:
        """Edge servers (or the cloud) send the model to ``devices`` devices."""
        self.bytes["edge_to_device"] += model_bytes * devices

    def update_from_device(self, n_bytes: int, relay: Sequence[Hop] = ()) -> None:
        """A device's update over its access link, then relayed over ``relay`` hops."""
        self.bytes["device_to_edge"] += n_bytes
        self.bytes["edge_to_cloud"] += n_bytes * len(relay)

    def models_to_cloud(self, model_bytes: int, backhauls: Iterable[Sequence[Hop]]) -> None:
        """Edge servers send their models to the cloud, once per backhaul hop."""
        for hops in backhauls:
            self.bytes["edge_to_cloud"] += model_bytes * len(hops)
