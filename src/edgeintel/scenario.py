"""Scenario files: the validated description of a deployment.

A scenario names the tiers (one cloud, edge servers typed as macro or micro
base stations, groups of devices with a hardware profile), the links between
them, the data each device sees, the task's model, and per-component settings.
``load_scenario(path)`` reads YAML, validates everything (types, unknown fields,
dangling links, missing files, reachability of the cloud) and raises a
``ConfigError`` whose message is one line naming the field path.

Units: compute speed is relative to the machine running edgeintel (1.0 = this
machine, 0.1 = ten times slower); memory in MB; power in watts; energy in
joules; bandwidth in Mbit/s; round-trip time in ms; loss as a fraction.
"""

from __future__ import annotations

import itertools
import re
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from edgeintel.errors import ConfigError

__all__ = [
    "AggregationRuleName",
    "AttackName",
    "BaseStationKind",
    "CloudSpec",
    "CompressBudget",
    "CompressSettings",
    "DPSettings",
    "DataSpec",
    "Device",
    "DeviceGroup",
    "DeviceProfile",
    "EdgeServer",
    "FederatedAlgorithm",
    "Link",
    "LinkSpec",
    "PartitionKind",
    "PartitionSpec",
    "Scenario",
    "SecureAggregationSettings",
    "Settings",
    "TaskSpec",
    "TracePoint",
    "TrainingMode",
    "TrainingSettings",
    "UpdateCompressor",
    "dump_scenario",
    "load_scenario",
    "parse_scenario",
]

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
NodeName = Annotated[str, Field(pattern=_NAME, min_length=1, max_length=64)]
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _resolve_file(value: Path | None, info: ValidationInfo) -> Path | None:
    """Resolve a path relative to the scenario file's folder and check it exists."""
    if value is None:
        return None
    base = (info.context or {}).get("base_dir")
    path = value if value.is_absolute() or base is None else Path(base) / value
    if not path.exists():
        raise ValueError(f"file not found: {path}")
    return path


# --------------------------------------------------------------------------- links


def _strictly_increasing(times: list[float]) -> bool:
    return all(b > a for a, b in pairwise(times))


def _read_trace_csv(path: Path) -> list[TracePoint]:
    """Parse a link trace CSV with columns t_s, bandwidth_mbps[, rtt_ms, loss]."""
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        cols = set(reader.fieldnames or [])
        for need in ("t_s", "bandwidth_mbps"):
            if need not in cols:
                raise ValueError(f"{path}: missing column {need!r} (has {sorted(cols)})")
        points = []
        for line, row in enumerate(reader, start=2):
            try:
                points.append(
                    TracePoint(
                        t_s=float(row["t_s"]),
                        bandwidth_mbps=float(row["bandwidth_mbps"]),
                        rtt_ms=float(row["rtt_ms"]) if row.get("rtt_ms") else None,
                        loss=float(row["loss"]) if row.get("loss") else None,
                    )
                )
            except (ValueError, ValidationError):
                raise ValueError(f"{path}: line {line}: expected non-negative numbers") from None
    if not points or not _strictly_increasing([p.t_s for p in points]):
        raise ValueError(f"{path}: needs at least one row, with t_s strictly increasing")
    return points


class TracePoint(_Strict):
    """One step of a time-varying link: from ``t_s`` on, the link has these values."""

    t_s: NonNegative
    bandwidth_mbps: NonNegative
    rtt_ms: NonNegative | None = None
    loss: Annotated[float, Field(ge=0, le=1)] | None = None


class LinkSpec(_Strict):
    """Properties of a link; a bandwidth of 0 in a trace step means an outage."""

    bandwidth_mbps: Positive
    rtt_ms: NonNegative = 0.0
    loss: Annotated[float, Field(ge=0, lt=1)] = 0.0
    trace: list[TracePoint] | None = None
    trace_file: Path | None = Field(
        default=None, description="CSV with columns t_s, bandwidth_mbps[, rtt_ms, loss]"
    )

    @field_validator("trace_file")
    @classmethod
    def _check_trace_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        path = _resolve_file(value, info)
        if path is not None:
            _read_trace_csv(path)  # raises with the file and the problem
        return path

    @model_validator(mode="after")
    def _one_trace(self) -> LinkSpec:
        if self.trace is not None and self.trace_file is not None:
            raise ValueError("give either 'trace' or 'trace_file', not both")
        return self

    def trace_points(self) -> list[TracePoint]:
        """The time-varying steps (inline or from ``trace_file``); empty for a static link."""
        if self.trace is not None:
            return list(self.trace)
        if self.trace_file is not None:
            return _read_trace_csv(self.trace_file)
        return []

    def at(self, t_s: float) -> tuple[float, float, float]:
        """(bandwidth Mbit/s, RTT ms, loss) in force at time ``t_s``; bandwidth 0 = outage."""
        bw, rtt, loss = self.bandwidth_mbps, self.rtt_ms, self.loss
        for p in self.trace_points():
            if p.t_s > t_s:
                break
            bw = p.bandwidth_mbps
            rtt = p.rtt_ms if p.rtt_ms is not None else rtt
            loss = p.loss if p.loss is not None else loss
        return bw, rtt, loss

    @field_validator("trace")
    @classmethod
    def _increasing(cls, trace: list[TracePoint] | None) -> list[TracePoint] | None:
        if trace is not None:
            times = [p.t_s for p in trace]
            if any(b <= a for a, b in itertools.pairwise(times)):
                raise ValueError("trace times t_s must be strictly increasing")
        return trace


class Link(LinkSpec):
    """A link between two named nodes (bidirectional)."""

    between: tuple[NodeName, NodeName]

    @field_validator("between")
    @classmethod
    def _distinct(cls, ends: tuple[str, str]) -> tuple[str, str]:
        if ends[0] == ends[1]:
            raise ValueError(f"a link needs two different nodes, got {ends[0]!r} twice")
        return ends


# --------------------------------------------------------------------------- nodes


class BaseStationKind(StrEnum):
    MACRO = "macro"
    MICRO = "micro"


class CloudSpec(_Strict):
    name: NodeName = "cloud"
    compute_speed: Positive = 4.0
    memory_mb: Positive = 65536


class EdgeServer(_Strict):
    """An edge server co-located with a macro or micro base station."""

    name: NodeName
    kind: BaseStationKind
    compute_speed: Positive = 1.0
    memory_mb: Positive = 8192
    cache_mb: NonNegative = 1024


class DeviceProfile(_Strict):
    """Hardware of a device class; power in W, battery in J, speed relative to this machine."""

    compute_speed: Positive
    memory_mb: Positive
    power_compute_w: NonNegative
    power_tx_w: NonNegative
    power_idle_w: NonNegative
    battery_j: Positive


class DeviceGroup(_Strict):
    """``count`` devices of one profile attached to one edge server (or the cloud)."""

    name: NodeName
    count: Annotated[int, Field(ge=1, le=100_000)]
    profile: str
    attach: NodeName
    link: LinkSpec = LinkSpec(bandwidth_mbps=20.0, rtt_ms=10.0)


@dataclass(frozen=True)
class Device:
    """One expanded device of a group."""

    name: str
    index: int
    group: str
    profile_name: str
    profile: DeviceProfile
    attach: str
    link: LinkSpec


# --------------------------------------------------------------------------- data & task


class PartitionKind(StrEnum):
    IID = "iid"
    DIRICHLET = "dirichlet"
    QUANTITY = "quantity"
    NATURAL = "natural"


class PartitionSpec(_Strict):
    """How a dataset is split across devices.

    ``dirichlet``: label skew, each device's class mix ~ Dir(alpha).
    ``quantity``: IID labels, device sizes ~ Dir(alpha).
    ``natural``: by subject / recording id where the dataset has one.
    """

    kind: PartitionKind = PartitionKind.IID
    alpha: Positive = 0.5
    min_samples: Annotated[int, Field(ge=0)] = 1


class DataSpec(_Strict):
    """Either a bundled ``dataset`` name or a user's ``path`` (NPZ, CSV, Parquet, image folder)."""

    dataset: str | None = None
    path: Path | None = None
    label_column: str = "label"
    group_column: str | None = None
    shape: list[Annotated[int, Field(ge=1)]] | None = Field(
        default=None, description="reshape each row of a table to this sample shape"
    )
    image_size: Annotated[int, Field(ge=4, le=512)] = 32
    max_samples: Annotated[int, Field(ge=10)] | None = None
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.25
    partition: PartitionSpec = PartitionSpec()

    _check_path = field_validator("path")(_resolve_file)

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if self.dataset is not None and self.path is not None:
            raise ValueError("give only one of 'dataset' (a bundled dataset) or 'path', not both")
        if self.dataset is None and self.path is None:
            raise ValueError("give 'dataset' (a bundled dataset) or 'path' (your own data file)")
        return self


class TaskSpec(_Strict):
    """The model: a zoo family name or a user factory ``module:function``.

    A factory's module is a ``.py`` file beside the scenario (``mymodels:build`` or
    ``models/mymodels.py:build``), pinned to its absolute path when the scenario is
    loaded and imported by that path, or else an installed package's module.
    """

    model: str
    width: Annotated[int, Field(ge=1, le=1024)] = 16

    @field_validator("model")
    @classmethod
    def _model_name(cls, value: str, info: ValidationInfo) -> str:
        from edgeintel.models.zoo import resolve_model_ref

        if ":" not in value:
            return value
        if not re.fullmatch(r"([\w.]+|[^:]+\.py):\w+", value):
            raise ValueError(
                "a model factory must look like 'module:function' or 'file.py:function', "
                f"got {value!r}"
            )
        return resolve_model_ref(value, (info.context or {}).get("base_dir"))


# --------------------------------------------------------------------------- settings


class TrainingMode(StrEnum):
    """``auto``: hierarchical when devices attach to edge servers, else federated."""

    AUTO = "auto"
    CENTRAL = "central"
    SOLO = "solo"
    FEDERATED = "federated"
    HIERARCHICAL = "hierarchical"


class FederatedAlgorithm(StrEnum):
    FEDAVG = "fedavg"
    FEDPROX = "fedprox"
    FEDADAM = "fedadam"
    FEDAVGM = "fedavgm"


class UpdateCompressor(StrEnum):
    NONE = "none"
    TOPK = "topk"
    INT8 = "int8"
    SIGN = "sign"


class AggregationRuleName(StrEnum):
    FEDAVG = "fedavg"
    KRUM = "krum"
    MULTI_KRUM = "multi_krum"
    MEDIAN = "median"
    TRIMMED_MEAN = "trimmed_mean"
    NORM_CLIP = "norm_clip"


class AttackName(StrEnum):
    SIGN_FLIP = "sign_flip"
    GAUSSIAN_NOISE = "gaussian_noise"
    LABEL_FLIP = "label_flip"
    ALIE = "alie"


Fraction = Annotated[float, Field(ge=0, lt=1)]


class DPSettings(_Strict):
    """Client-level differential privacy (DP-FedAvg), see docs/privacy.md.

    ``noise_multiplier`` z and ``clip_norm`` C (L2, parameter units); ``clipping``
    ``fixed`` or ``adaptive`` (towards the ``target_quantile`` of update norms);
    ``target_epsilon`` at ``target_delta`` bounds training (``on_budget``: stop or warn).
    """

    noise_multiplier: Positive = 1.0
    clip_norm: Positive = 1.0
    clipping: Annotated[str, Field(pattern=r"^(fixed|adaptive)$")] = "fixed"
    target_quantile: Annotated[float, Field(gt=0, lt=1)] = 0.5
    clip_lr: Positive = 0.2
    target_epsilon: Positive | None = None
    target_delta: Annotated[float, Field(gt=0, lt=1)] = 1e-5
    on_budget: Annotated[str, Field(pattern=r"^(stop|warn)$")] = "stop"


class SecureAggregationSettings(_Strict):
    """Pairwise-masking secure aggregation at every device-level aggregator.

    ``scale_bits``: fixed-point resolution 2^-scale_bits; ``threshold``: fraction of a
    device's share holders needed to recover its masks; ``dropout``: share of devices
    simulated to drop out after masking (recovered from secret shares); ``neighbors``:
    SecAgg+ degree (even), each device masks with and shares to only that many peers.
    """

    scale_bits: Annotated[int, Field(ge=8, le=48)] = 24
    threshold: Annotated[float, Field(gt=0, lt=1)] = 0.5
    dropout: Annotated[float, Field(ge=0, lt=0.5)] = 0.0
    neighbors: Annotated[int, Field(ge=2, multiple_of=2)] | None = None


class TrainingSettings(_Strict):
    """Central baseline (epochs, batch_size, lr, weight_decay: Adam) and edge training.

    Edge training (see docs/training.md): ``mode``; federated rounds of
    ``local_steps`` (k1) or ``local_epochs`` SGD at ``client_lr`` on
    ``clients_per_round`` sampled devices; ``algorithm`` with ``mu`` (FedProx) and
    ``server_lr``; ``k2`` edge aggregations per cloud aggregation (hierarchical);
    an update ``compressor``; a robust ``aggregation`` rule; an ``attack`` run by
    ``malicious_fraction`` of the devices; a round deadline; dropouts; solo
    fine-tuning of the last ``finetune_layers`` layers.
    """

    epochs: Annotated[int, Field(ge=1, le=1000)] = 10
    batch_size: Annotated[int, Field(ge=1, le=65536)] = 32
    lr: Positive = 3e-3
    weight_decay: NonNegative = 0.0
    # ---- edge training (issue 4)
    mode: TrainingMode = TrainingMode.AUTO
    rounds: Annotated[int, Field(ge=1, le=100_000)] = 10
    clients_per_round: Annotated[int, Field(ge=1)] | None = None
    local_steps: Annotated[int, Field(ge=1, le=100_000)] | None = 10
    local_epochs: Annotated[int, Field(ge=1, le=1000)] | None = None
    client_lr: Positive = 0.05
    algorithm: FederatedAlgorithm = FederatedAlgorithm.FEDAVG
    mu: NonNegative = 0.01
    server_lr: Positive | None = None
    k2: Annotated[int, Field(ge=1, le=1000)] = 5
    compressor: UpdateCompressor = UpdateCompressor.NONE
    topk_ratio: Annotated[float, Field(gt=0, le=1)] = 0.01
    error_feedback: bool | None = None
    aggregation: AggregationRuleName = AggregationRuleName.FEDAVG
    byzantine_fraction: Annotated[float, Field(ge=0, lt=0.5)] | None = None
    clip_norm: Positive | None = None
    attack: AttackName | None = None
    malicious_fraction: Fraction = 0.0
    deadline_s: Positive | None = None
    deadline_quantile: Annotated[float, Field(gt=0, le=1)] | None = None
    dropout: Fraction = 0.0
    finetune_layers: Annotated[int, Field(ge=1)] | None = None
    # ---- privacy and fault tolerance (issue 5)
    dp: DPSettings | None = None
    secure_aggregation: SecureAggregationSettings | None = None
    checkpoint_dir: Path | None = Field(
        default=None, description="save the aggregator state here every round; resume from it"
    )

    @model_validator(mode="after")
    def _edge_training(self) -> TrainingSettings:
        if self.local_epochs is not None and "local_steps" not in self.model_fields_set:
            object.__setattr__(self, "local_steps", None)
        if (self.local_steps is None) == (self.local_epochs is None):
            raise ValueError("give exactly one of 'local_steps' and 'local_epochs'")
        if self.deadline_s is not None and self.deadline_quantile is not None:
            raise ValueError("give at most one of 'deadline_s' and 'deadline_quantile'")
        if self.aggregation == AggregationRuleName.NORM_CLIP and self.clip_norm is None:
            raise ValueError("aggregation 'norm_clip' needs 'clip_norm'")
        if self.attack is not None and self.malicious_fraction == 0:
            raise ValueError("an 'attack' needs 'malicious_fraction' > 0")
        if self.secure_aggregation is not None:
            if self.aggregation != AggregationRuleName.FEDAVG:
                raise ValueError(
                    "secure_aggregation reveals only the sum; use aggregation 'fedavg'"
                )
            if self.compressor != UpdateCompressor.NONE:
                raise ValueError("secure_aggregation needs compressor 'none' (masks are dense)")
            if self.dp is not None and self.dp.clipping == "adaptive":
                raise ValueError("secure_aggregation with dp supports dp.clipping 'fixed' only")
        return self


class CompressBudget(_Strict):
    """A device's compression budget (``None`` = not checked); latency on the device in ms.

    ``max_peak_memory_mb`` defaults to the device profile's ``memory_mb``.
    """

    max_latency_ms: Positive | None = None
    max_model_kb: Positive | None = None
    max_peak_memory_mb: Positive | None = None
    min_accuracy: Annotated[float, Field(ge=0, le=1)] | None = None


class CompressSettings(_Strict):
    """The compression stage: search ``search_space`` and pick one artifact per device profile.

    ``budget`` applies to every profile; ``budgets`` overrides it per profile name.
    """

    enabled: bool = True
    search_space: Literal["quick", "default"] = "quick"
    objective: Literal["accuracy", "latency", "size"] = "accuracy"
    latency_stat: Literal["p50", "p95"] = "p50"
    budget: CompressBudget = CompressBudget()
    budgets: dict[str, CompressBudget] = {}


class InferenceSettings(_Strict):
    """ONNX Runtime measurement settings (latency at batch 1, one intra-op thread)."""

    latency_runs: Annotated[int, Field(ge=5, le=100_000)] = 100
    warmup_runs: Annotated[int, Field(ge=0, le=10_000)] = 10
    compress: CompressSettings = CompressSettings()


class OffloadingSettings(_Strict):
    pass


class CachingSettings(_Strict):
    pass


class RuntimeSettings(_Strict):
    pass


class Settings(_Strict):
    training: TrainingSettings = TrainingSettings()
    inference: InferenceSettings = InferenceSettings()
    offloading: OffloadingSettings = OffloadingSettings()
    caching: CachingSettings = CachingSettings()
    runtime: RuntimeSettings = RuntimeSettings()


# --------------------------------------------------------------------------- scenario


class Scenario(_Strict):
    """A whole deployment; build with ``load_scenario`` or ``parse_scenario``."""

    name: NodeName
    description: str = ""
    seed: Annotated[int, Field(ge=0)] = 0
    task: TaskSpec
    data: DataSpec
    cloud: CloudSpec = CloudSpec()
    edge_servers: list[EdgeServer] = []
    device_profiles: dict[str, DeviceProfile]
    devices: Annotated[list[DeviceGroup], Field(min_length=1)]
    links: list[Link] = []
    settings: Settings = Settings()

    @model_validator(mode="after")
    def _topology(self) -> Scenario:
        names = [self.cloud.name] + [e.name for e in self.edge_servers]
        seen: set[str] = set()
        for i, name in enumerate(names):
            if name in seen:
                raise _FieldError(("edge_servers", i - 1, "name"), f"duplicate node name {name!r}")
            seen.add(name)
        infra = set(names)
        for i, group in enumerate(self.devices):
            if group.profile not in self.device_profiles:
                known = ", ".join(sorted(self.device_profiles)) or "none defined"
                raise _FieldError(
                    ("devices", i, "profile"),
                    f"unknown device profile {group.profile!r}; expected one of: {known}",
                )
            if group.attach not in infra:
                raise _FieldError(
                    ("devices", i, "attach"),
                    f"unknown node {group.attach!r}; expected an edge server or the cloud "
                    f"({', '.join(sorted(infra))})",
                )
            if group.name in infra:
                raise _FieldError(("devices", i, "name"), f"{group.name!r} is already a node name")
        groups = [g.name for g in self.devices]
        for i, g in enumerate(groups):
            if g in groups[:i]:
                raise _FieldError(("devices", i, "name"), f"duplicate device group {g!r}")
        for i, link in enumerate(self.links):
            for end in link.between:
                if end not in infra:
                    raise _FieldError(
                        ("links", i, "between"),
                        f"dangling link: unknown node {end!r}; links join the cloud and edge "
                        f"servers ({', '.join(sorted(infra))}); devices use devices[].link",
                    )
        reach = self._reachable_from_cloud()
        for i, edge in enumerate(self.edge_servers):
            if edge.name not in reach:
                raise _FieldError(
                    ("edge_servers", i),
                    f"edge server {edge.name!r} has no link path to the cloud; add a link",
                )
        for name in self.settings.inference.compress.budgets:
            if name not in self.device_profiles:
                known = ", ".join(sorted(self.device_profiles))
                raise _FieldError(
                    ("settings", "inference", "compress", "budgets", name),
                    f"unknown device profile {name!r}; expected one of: {known}",
                )
        return self

    # ----------------------------------------------------------------- topology

    def _adjacency(self) -> dict[str, list[str]]:
        adj: dict[str, list[str]] = {self.cloud.name: []}
        for e in self.edge_servers:
            adj[e.name] = []
        for link in self.links:
            a, b = link.between
            adj[a].append(b)
            adj[b].append(a)
        return adj

    def _reachable_from_cloud(self) -> dict[str, str | None]:
        """BFS from the cloud: node -> parent on a shortest path towards the cloud."""
        adj = self._adjacency()
        parent: dict[str, str | None] = {self.cloud.name: None}
        queue = deque([self.cloud.name])
        while queue:
            node = queue.popleft()
            for nxt in sorted(adj[node]):
                if nxt not in parent:
                    parent[nxt] = node
                    queue.append(nxt)
        return parent

    def expand_devices(self) -> list[Device]:
        """All devices, named ``<group>-<i>``, in declaration order."""
        out: list[Device] = []
        for g in self.devices:
            for i in range(g.count):
                out.append(
                    Device(
                        name=f"{g.name}-{i}",
                        index=len(out),
                        group=g.name,
                        profile_name=g.profile,
                        profile=self.device_profiles[g.profile],
                        attach=g.attach,
                        link=g.link,
                    )
                )
        return out

    @property
    def num_devices(self) -> int:
        return sum(g.count for g in self.devices)

    def path_to_cloud(self, node: str) -> list[str]:
        """Nodes from ``node`` (an edge server or the cloud) up to the cloud, both included."""
        parent = self._reachable_from_cloud()
        if node not in parent:
            raise ConfigError(f"node {node!r} is not connected to the cloud")
        path = [node]
        while (p := parent[path[-1]]) is not None:
            path.append(p)
        return path

    def link_between(self, a: str, b: str) -> Link:
        for link in self.links:
            if set(link.between) == {a, b}:
                return link
        raise ConfigError(f"no link between {a!r} and {b!r}")

    def edge_server(self, name: str) -> EdgeServer:
        for e in self.edge_servers:
            if e.name == name:
                return e
        raise ConfigError(f"unknown edge server {name!r}")


# --------------------------------------------------------------------------- loading


class _FieldError(ValueError):
    """Raised inside validators to point at a precise field path."""

    def __init__(self, loc: tuple[str | int, ...], msg: str) -> None:
        super().__init__(msg)
        self.loc = loc
        self.msg = msg


def _loc_str(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _fields_at(loc: tuple[Any, ...]) -> list[str] | None:
    """Field names of the model at ``loc`` inside Scenario (for 'unknown field' hints)."""
    model: Any = Scenario
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(model, "model_fields", None)
        if fields is None:
            return None
        if part not in fields:
            # dict keys (e.g. device profile names) pass through to the value type
            ann = _unwrap(model)
            if ann is None:
                return None
            model = ann
            continue
        model = _unwrap(fields[part].annotation)
        if model is None:
            return None
    fields = getattr(model, "model_fields", None)
    return sorted(fields) if fields else None


def _unwrap(ann: Any) -> Any:
    """The BaseModel class inside Optional/list/dict annotations, if any."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in getattr(ann, "__args__", ()) or ():
        found = _unwrap(arg)
        if found is not None:
            return found
    return None


def _format_error(err: dict[str, Any]) -> str:
    loc = tuple(err["loc"])
    ctx = err.get("ctx") or {}
    inner = ctx.get("error")
    if isinstance(inner, _FieldError):
        return f"{_loc_str(loc + inner.loc)}: {inner.msg}"
    if err["type"] == "extra_forbidden":
        allowed = _fields_at(loc[:-1])
        hint = f"; expected one of: {', '.join(allowed)}" if allowed else ""
        return f"{_loc_str(loc)}: unknown field{hint}"
    if err["type"] == "missing":
        return f"{_loc_str(loc)}: required field is missing"
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    msg = msg[0].lower() + msg[1:]
    if (
        err["type"] != "value_error"
        and "input" in err
        and not isinstance(err["input"], dict | list)
    ):
        msg += f", got {err['input']!r}"
    return f"{_loc_str(loc)}: {msg}"


def parse_scenario(
    raw: dict[str, Any], base_dir: Path | None = None, source: str = "scenario"
) -> Scenario:
    """Validate a scenario mapping; relative paths resolve against ``base_dir``."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of scenario fields at the top level")
    try:
        return Scenario.model_validate(raw, context={"base_dir": base_dir})
    except ValidationError as exc:
        errors = exc.errors()
        first = _format_error(dict(errors[0]))
        more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
        raise ConfigError(f"{source}: {first}{more if len(errors) > 1 else ''}") from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario YAML file; raise ConfigError with a one-line message."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"scenario file not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{p}: not valid YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a UTF-8 text file") from None
    return parse_scenario(raw, base_dir=p.parent, source=str(p))


def dump_scenario(scenario: Scenario) -> dict[str, Any]:
    """JSON-ready mapping of a scenario (round-trips through ``parse_scenario``)."""
    return scenario.model_dump(mode="json", exclude_none=True)
