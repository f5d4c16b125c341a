"""``settings.offloading`` of a scenario (imported by ``edgeintel.scenario``).

Kept free of the scenario module (which imports it) and of heavy imports:
policy names are checked against the split-search and placement registries.
Units: ms, Hz, Mbit/s; every number has an upper bound.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, field_validator, model_validator

from edgeintel.errors import FieldError
from edgeintel.offloading.placement import PLACEMENTS
from edgeintel.offloading.split_search import SPLITTERS
from edgeintel.schema import Strict, registry_name, resolve_file

if TYPE_CHECKING:
    from edgeintel.topology import Topology

__all__ = ["D2DLink", "EarlyExitSettings", "OffloadingSettings"]

DeadlineMs = Annotated[float, Field(gt=0, le=1e7)]
"""A deadline in ms: above 0, at most about 2.8 hours."""


class D2DLink(Strict):
    """Device-to-device link between devices attached to the same node (e.g. Wi-Fi Direct)."""

    bandwidth_mbps: Annotated[float, Field(gt=0, le=1e6)] = 50.0
    rtt_ms: Annotated[float, Field(ge=0, le=1e6)] = 3.0
    neighbors: Annotated[int, Field(ge=1, le=16)] = 2


class EarlyExitSettings(Strict):
    """An exit head (BranchyNet) the ``offloading`` stage fits and the planner may use.

    ``after_block``: exit after that many backbone stages (1 .. stages - 1); unset:
    chosen on the validation split among ``candidate_blocks`` (default about 1/4, 1/2
    and 3/4 of the chain) by ``select_exit_point``. The threshold keeps the cascade's
    validation accuracy >= ``target_accuracy`` (unset: the full model's validation
    accuracy minus ``max_accuracy_drop``); ``confidence``: ``max_prob`` or ``entropy``;
    ``epochs`` of post-hoc head training. Block indices are checked against the
    model by ``edgeintel validate`` / the stage (``check_exit_blocks``).
    """

    enabled: bool = True
    after_block: Annotated[int, Field(ge=1)] | None = None
    candidate_blocks: Annotated[list[Annotated[int, Field(ge=1)]], Field(max_length=64)] = Field(
        default_factory=list
    )
    target_accuracy: Annotated[float, Field(ge=0, le=1)] | None = None
    max_accuracy_drop: Annotated[float, Field(ge=0, le=1)] = 0.01
    confidence: Literal["max_prob", "entropy"] = "max_prob"
    epochs: Annotated[int, Field(ge=1, le=1000)] = 30

    @model_validator(mode="after")
    def _one_way(self) -> EarlyExitSettings:
        if self.after_block is not None and self.candidate_blocks:
            raise ValueError(
                "give either 'after_block' (a fixed exit) or 'candidate_blocks' (chosen on "
                "the validation split), not both"
            )
        if len(set(self.candidate_blocks)) != len(self.candidate_blocks):
            raise ValueError(f"candidate_blocks repeat a block: {self.candidate_blocks}")
        return self


class OffloadingSettings(Strict):
    """Where each device's inference runs (see docs/offloading.md).

    ``objective``: ``latency`` (ms), ``energy`` (device J) or ``weighted``
    (``latency_weight`` x latency / all-local latency + the rest x energy /
    all-local energy); ``deadline_ms`` per request (``deadlines_ms`` per device
    group overrides it); ``request_rate_hz`` per device; servers have
    ``server_workers`` (edge) / ``cloud_workers`` parallel workers and a
    ``server_load`` background utilisation by name; placement keeps every
    server and device under ``max_utilization``. ``splitter``: ``mincut``
    (DADS, any DAG) or ``chain`` (Neurosurgeon, prefix cuts); ``placement``:
    ``auto``, ``milp``, ``greedy`` or ``brute_force``; ``int8_intermediate``
    sends int8-quantized intermediates; ``hysteresis``: a new plan must be this
    fraction better than the current one before the device switches;
    ``profile_file``: a saved ``ModelProfile`` (e.g. measured on the device)
    used instead of profiling here; ``early_exit``: see ``EarlyExitSettings``.
    """

    enabled: bool = True
    objective: Literal["latency", "energy", "weighted"] = "latency"
    latency_weight: Annotated[float, Field(ge=0, le=1)] = 0.5
    deadline_ms: DeadlineMs | None = None
    deadlines_ms: dict[str, DeadlineMs] = Field(default_factory=dict)
    request_rate_hz: Annotated[float, Field(gt=0, le=100_000)] = 2.0
    server_workers: Annotated[int, Field(ge=1, le=4096)] = 4
    cloud_workers: Annotated[int, Field(ge=1, le=100_000)] = 64
    server_load: dict[str, Annotated[float, Field(ge=0, lt=1)]] = Field(default_factory=dict)
    max_utilization: Annotated[float, Field(gt=0, lt=1)] = 0.9
    splitter: Annotated[str, registry_name(SPLITTERS, without=("brute_force",))] = "mincut"
    placement: Annotated[str, registry_name(PLACEMENTS, also=("auto",))] = "auto"
    exact_max_devices: Annotated[int, Field(ge=1, le=64)] = 12
    int8_intermediate: bool = False
    d2d: D2DLink | None = None
    hysteresis: Annotated[float, Field(ge=0, lt=1)] = 0.1
    profile_file: Path | None = None
    profile_rounds: Annotated[int, Field(ge=1, le=100)] = 3
    early_exit: EarlyExitSettings | None = None

    _profile_file = field_validator("profile_file")(resolve_file)

    def check_scenario(self, topology: Topology) -> None:
        """Group and node names of ``deadlines_ms`` and ``server_load`` exist."""
        groups = sorted(g.name for g in topology.devices)
        for group in self.deadlines_ms:
            if group not in groups:
                raise FieldError(
                    ("deadlines_ms", group),
                    f"unknown device group {group!r}; expected one of: {', '.join(groups)}",
                )
        nodes = sorted([topology.cloud.name, *(e.name for e in topology.edge_servers)])
        for node in self.server_load:
            if node not in nodes:
                raise FieldError(
                    ("server_load", node),
                    f"unknown node {node!r}; expected one of: {', '.join(nodes)}",
                )
