"""Runtime settings: the ``settings.runtime`` block of a scenario (server, batching, store).

Units are in the names: ``_us`` microseconds, ``_ms`` milliseconds, ``_s``
seconds, ``_bytes`` bytes. Defaults suit a small shared machine: one ONNX
Runtime intra-op thread per model (server and clients share the cores; default
BLAS threading halved throughput when measured here).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field

from edgeintel.schema import Strict as _Strict

__all__ = [
    "BatchingSettings",
    "DeploySettings",
    "OnFull",
    "Placement",
    "RuntimeSettings",
    "ServerSettings",
    "StoreSettings",
]


class BatchingSettings(_Strict):
    """Dynamic batching like Triton's ``dynamic_batching`` block.

    Concurrent requests for one model are grouped up to ``max_batch_size``
    rows or until the first waited ``max_queue_delay_us`` microseconds, then
    run as one ONNX Runtime call. ``max_batch_size: 1`` turns batching off.
    ``queue_capacity`` requests may wait per model; more are answered 503.
    """

    max_batch_size: Annotated[int, Field(ge=1, le=4096)] = 32
    max_queue_delay_us: Annotated[int, Field(ge=0, le=10_000_000)] = 2000
    queue_capacity: Annotated[int, Field(ge=1, le=1_000_000)] = 1024


class ServerSettings(_Strict):
    """An edge or cloud node: ONNX Runtime threads, request limits, shutdown grace."""

    intra_op_threads: Annotated[int, Field(ge=1, le=256)] = 1
    max_request_bytes: Annotated[int, Field(ge=1024)] = 16 * 1024 * 1024
    graceful_shutdown_s: Annotated[float, Field(ge=0, le=600)] = 10.0
    batching: BatchingSettings = BatchingSettings()


class OnFull(StrEnum):
    """What a full device store does with a new result."""

    REJECT_NEW = "reject_new"
    DROP_OLDEST = "drop_oldest"


class StoreSettings(_Strict):
    """The device's SQLite store-and-forward queue.

    ``ttl_s``: undelivered results older than this are expired (counted, not
    sent). ``max_records``: capacity of undelivered results; ``on_full`` says
    whether a new result is rejected or the oldest undelivered one dropped.
    ``group_commit_ms``: appends arriving within this window share one commit
    (one fsync); an append returns only after its commit.
    """

    ttl_s: Annotated[float, Field(gt=0)] = 24 * 3600.0
    max_records: Annotated[int, Field(ge=1)] = 1_000_000
    on_full: OnFull = OnFull.DROP_OLDEST
    group_commit_ms: Annotated[float, Field(ge=0, le=1000)] = 2.0
    forward_batch: Annotated[int, Field(ge=1, le=100_000)] = 500


class Placement(StrEnum):
    """Where every device's inference runs in a deployed run (until the offloading
    planner gives a plan per device)."""

    DEVICE = "device"
    EDGE = "edge"


class DeploySettings(_Strict):
    """``edgeintel run`` deploys the scenario on this machine when ``enabled``: one server
    process per serving node (edge servers with devices attached, or the cloud), device
    agents for ``duration_s`` seconds, links emulated from the scenario when
    ``emulate_links``. ``max_devices`` caps the agents (None: every device)."""

    enabled: bool = False
    duration_s: Annotated[float, Field(gt=0, le=3600)] = 10.0
    placement: Placement = Placement.EDGE
    emulate_links: bool = True
    max_devices: Annotated[int, Field(ge=1)] | None = None
    drain_timeout_s: Annotated[float, Field(ge=0, le=600)] = 15.0


class RuntimeSettings(_Strict):
    """Everything the running system (servers and device agents) reads from a scenario.

    ``rate_hz`` paces a device's stream when the dataset has no rate of its
    own (sensor windows and video frames replay at their recorded rate).
    ``offload_timeout_ms``: a device falls back to local inference when the
    server has not answered within this time.
    """

    server: ServerSettings = ServerSettings()
    store: StoreSettings = StoreSettings()
    rate_hz: Annotated[float, Field(gt=0, le=100_000)] = 10.0
    offload_timeout_ms: Annotated[float, Field(gt=0)] = 500.0
    deploy: DeploySettings = DeploySettings()
