"""``settings.sim`` of a scenario: the fleet simulator (imported by ``edgeintel.scenario``).

Kept light (no SimPy, no ONNX Runtime): policy names are checked against the
offloading placement registry (``offloading.placement.PLACEMENTS``) and the
cache replacement registry (``caching.POLICIES``) when the scenario is loaded,
so a wrong name is one line listing the registered names.

Units: time in s (``_s``) or ms (``_ms``), rates in Hz, bandwidth in Mbit/s,
sizes in bytes.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from edgeintel.caching.policies import POLICIES
from edgeintel.offloading.placement import PLACEMENTS
from edgeintel.schema import Bytes, Strict, registry_name

__all__ = [
    "CAPABILITY_SIGMA",
    "FederatedSimSettings",
    "MobilitySettings",
    "ResolvedSimSettings",
    "SimSettings",
    "TraceSettings",
]

CAPABILITY_SIGMA = 0.5
"""Default log-normal spread of compute speed and bandwidth across devices (FedScale-like)."""

Count = Annotated[int, Field(ge=1, le=10_000_000)]
"""A number of devices, entries or keys: 1 .. 10**7 (memory is checked as well)."""
Sigma = Annotated[float, Field(ge=0, le=5)]
"""Sigma of a log-normal's log: 5 already spreads a median 148x either way."""
Period = Annotated[float, Field(ge=1.0, le=1e7)]
"""A mean period in s: 1 s .. 115 days (shorter ones flood the event queue)."""
Mbps = Annotated[float, Field(gt=0, le=1e6)]


class TraceSettings(Strict):
    """Per-device capability and availability, sampled from the seed (in the spirit of FedScale).

    A device's compute speed and link bandwidth are its profile's / link's values
    times a log-normal factor of median 1 (``speed_sigma``, ``bandwidth_sigma``:
    sigma of the log); it is on for exponential periods of mean ``mean_on_s`` and
    off for periods of mean ``mean_off_s`` (0: always on). Tasks of an off device
    are not generated.
    """

    speed_sigma: Sigma = CAPABILITY_SIGMA
    bandwidth_sigma: Sigma = CAPABILITY_SIGMA
    mean_on_s: Period = 3600.0
    mean_off_s: Annotated[float, Field(ge=0, le=1e7)] = 0.0

    @field_validator("mean_off_s")
    @classmethod
    def _off(cls, value: float) -> float:
        if 0 < value < 1:
            raise ValueError(f"expected 0 (always on) or at least 1 s, got {value:g}")
        return value


class MobilitySettings(Strict):
    """Handovers: each device attached to an edge server moves to another one (uniformly) at
    Poisson times of rate ``handover_rate_hz``; its plan follows it, and its
    ``follow_entries`` most recent results are copied into the new station's cache."""

    handover_rate_hz: Annotated[float, Field(ge=0, le=1)] = 1.0 / 600.0
    follow_entries: Annotated[int, Field(ge=0, le=1024)] = 8


class FederatedSimSettings(Strict):
    """Federated rounds every ``round_interval_s``: ``clients_per_round`` available devices
    (alive, switched on) are drawn; each downloads ``model_bytes``, trains
    ``local_compute_ms`` (at compute speed 1.0) and uploads ``model_bytes`` over its
    link and backhaul (``network.Exchange``). A client whose exchange ends after
    ``deadline_s`` is a straggler; one that switches off or runs flat before it ends
    drops out."""

    enabled: bool = False
    round_interval_s: Annotated[float, Field(ge=0.1, le=1e7)] = 60.0
    clients_per_round: Annotated[int, Field(ge=1, le=1_000_000)] = 10
    model_bytes: Annotated[int, Field(ge=1, le=2**40)] = 200_000
    local_compute_ms: Annotated[float, Field(gt=0, le=1e8)] = 2000.0
    deadline_s: Annotated[float, Field(gt=0, le=1e6)] = 30.0


class SimSettings(Strict):
    """The fleet simulator (``edgeintel simulate``, see docs/simulator.md).

    ``devices``: fleet size (default: the scenario's device count); each simulated
    device's class (profile, group link, base station) is drawn from the scenario's
    device groups in proportion to their counts. ``engine``: ``fast`` (our compiled
    kernel with the ``fast`` extra and an ``lru``/``fifo`` cache, else our Python heap core),
    ``python`` (the heap core) or ``simpy`` (the reference; identical records, slower).
    ``decisions``: the offloading policy decides at each ``epoch`` (start, handover, link
    trace step) or for every ``task``. ``placement``: the fleet placement policy of the initial
    plan (``offloading.placement.PLACEMENTS``); ``cache_policy``: the result cache's
    replacement policy at every edge server (``caching.POLICIES``) holding
    ``cache_entries`` results of a catalog of ``catalog`` keys with Zipf popularity
    ``zipf_alpha``. The redundancy ``filter`` skips ``skip_probability`` of tasks.
    Tasks arrive at ``task_rate_hz`` per device (default
    ``settings.offloading.request_rate_hz``) and cost ``task_ms`` at compute speed
    1.0, ``input_bytes`` up and ``result_bytes`` down. Those four figures, left unset,
    are the scenario's own (``edgeintel simulate`` takes them from ``--from-run`` or
    measures the scenario's model, ``sim.workload``); ``build_model`` fills what is
    still unknown with ``workload.GENERIC`` and says so in the result. A base station's cell uplink
    (``macro_uplink_mbps`` / ``micro_uplink_mbps``) serves one transfer at a time
    (FIFO) at its bandwidth, and no transfer ends before the device alone could have
    sent it: its devices share the cell's capacity. Servers run batches of up to ``max_batch``;
    a batch of n costs ``(1 + (n - 1) * batch_marginal)`` single-task times; a
    request that finds ``queue_limit`` waiting is dropped.

    Calibrated by the runtime (``edgeintel.sim.calibrate``, all 0 by default): each
    offloaded request also spends a protocol overhead (HTTP client and server stack,
    (de)serialisation) drawn log-normal with median ``request_overhead_ms`` and log
    spread ``request_overhead_sigma``, added to its latency while the device idles;
    every completed result is forwarded to the server's sink (store-and-forward) as
    ``forward_bytes`` up and ``forward_ack_bytes`` down, counted in the device tier's
    bytes (off the latency path, as in the runtime's forwarder thread).
    """

    devices: Count | None = None
    duration_s: Annotated[float, Field(gt=0, le=1e6)] = 600.0
    seed: Annotated[int, Field(ge=0, lt=2**32)] | None = None
    engine: Literal["fast", "python", "simpy"] = "fast"
    decisions: Literal["epoch", "task"] = "epoch"
    placement: Annotated[str, registry_name(PLACEMENTS)] = "greedy"
    cache_policy: Annotated[str, registry_name(POLICIES)] = "lru"
    cache_entries: Count = 1000
    catalog: Count = 10_000
    zipf_alpha: Annotated[float, Field(gt=0, le=10)] = 0.9
    filter: bool = True
    # None: the scenario's own workload (sim.workload; generic figures only where unknown)
    skip_probability: Annotated[float, Field(ge=0, lt=1)] | None = None
    task_rate_hz: Annotated[float, Field(gt=0, le=1000)] | None = None
    # share of readings that are alerts, for a kind that raises them (anomaly; default 1 %)
    alert_rate: Annotated[float, Field(ge=0, le=1)] | None = None
    task_ms: Annotated[float, Field(ge=1e-4, le=1e7)] | None = None
    input_bytes: Annotated[int, Field(ge=1, le=2**40)] | None = None
    result_bytes: Annotated[int, Field(ge=1, le=2**40)] | None = None
    macro_uplink_mbps: Mbps = 400.0
    micro_uplink_mbps: Mbps = 150.0
    max_batch: Annotated[int, Field(ge=1, le=1024)] = 8
    batch_marginal: Annotated[float, Field(gt=0, le=1)] = 0.5
    queue_limit: Count = 10_000
    traces: TraceSettings = TraceSettings()
    mobility: MobilitySettings = MobilitySettings()
    federated: FederatedSimSettings = FederatedSimSettings()
    series_bins: Annotated[int, Field(ge=2, le=10_000)] = 60
    # calibrated against the runtime (edgeintel.sim.calibrate); 0 = not modelled
    request_overhead_ms: Annotated[float, Field(ge=0, le=1e6)] = 0.0
    request_overhead_sigma: Sigma = 0.0
    forward_bytes: Bytes = 0
    forward_ack_bytes: Bytes = 0


class ResolvedSimSettings(SimSettings):
    """``SimSettings`` with the workload known (what ``build_model`` compiles and engines read)."""

    skip_probability: float
    task_ms: float
    input_bytes: int
    result_bytes: int
