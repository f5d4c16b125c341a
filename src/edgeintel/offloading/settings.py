"""``settings.offloading`` of a scenario (imported by ``edgeintel.scenario``).

Kept free of the scenario module (which imports it) and of heavy imports:
policy names are checked against the split-search and placement registries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

__all__ = ["D2DLink", "EarlyExitSettings", "OffloadingSettings"]

Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class D2DLink(_Strict):
    """Device-to-device link between devices attached to the same node (e.g. Wi-Fi Direct)."""

    bandwidth_mbps: Positive = 50.0
    rtt_ms: NonNegative = 3.0
    neighbors: Annotated[int, Field(ge=1, le=16)] = 2


class EarlyExitSettings(_Strict):
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
    candidate_blocks: list[Annotated[int, Field(ge=1)]] = []
    target_accuracy: Annotated[float, Field(ge=0, le=1)] | None = None
    max_accuracy_drop: Annotated[float, Field(ge=0, le=1)] = 0.01
    confidence: Literal["max_prob", "entropy"] = "max_prob"
    epochs: Annotated[int, Field(ge=1, le=1000)] = 30


class OffloadingSettings(_Strict):
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
    deadline_ms: Positive | None = None
    deadlines_ms: dict[str, Positive] = {}
    request_rate_hz: Positive = 2.0
    server_workers: Annotated[int, Field(ge=1, le=4096)] = 4
    cloud_workers: Annotated[int, Field(ge=1, le=100_000)] = 64
    server_load: dict[str, Annotated[float, Field(ge=0, lt=1)]] = {}
    max_utilization: Annotated[float, Field(gt=0, lt=1)] = 0.9
    splitter: str = "mincut"
    placement: str = "auto"
    exact_max_devices: Annotated[int, Field(ge=1, le=64)] = 12
    int8_intermediate: bool = False
    d2d: D2DLink | None = None
    hysteresis: Annotated[float, Field(ge=0, lt=1)] = 0.1
    profile_file: Path | None = None
    profile_rounds: Annotated[int, Field(ge=1, le=100)] = 3
    early_exit: EarlyExitSettings | None = None

    @field_validator("profile_file")
    @classmethod
    def _profile_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        base = (info.context or {}).get("base_dir")
        path = value if value.is_absolute() or base is None else Path(base) / value
        if not path.is_file():
            raise ValueError(f"file not found: {path}")
        return path

    @field_validator("splitter")
    @classmethod
    def _splitter(cls, value: str) -> str:
        from edgeintel.offloading.split_search import SPLITTERS

        if value not in SPLITTERS or value == "brute_force":
            raise ValueError(f"unknown split search {value!r}; expected one of: chain, mincut")
        return value

    @field_validator("placement")
    @classmethod
    def _placement(cls, value: str) -> str:
        from edgeintel.offloading.placement import PLACEMENTS

        if value != "auto" and value not in PLACEMENTS:
            known = ", ".join(["auto", *PLACEMENTS.names()])
            raise ValueError(f"unknown placement policy {value!r}; expected one of: {known}")
        return value
