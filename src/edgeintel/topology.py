"""Topology of a deployment: nodes (cloud, edge servers, devices), tiers, links and paths.

Nodes: one cloud, edge servers typed as macro or micro base stations, and groups
of devices sharing a hardware profile, each group attached to an edge server or
to the cloud over its own access link. ``Link``\\ s join the cloud and edge
servers (the backhaul); a link's properties may vary in time (``trace``).
``Topology`` is the graph over them: validation of names and reachability,
device expansion, and each node's path up to the cloud.

Units: compute speed relative to the machine running edgeintel (1.0 = this
machine, 0.1 = ten times slower); memory in MB; power in W; energy in J;
bandwidth in Mbit/s; round-trip time in ms; loss as a fraction; time in s.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from edgeintel.errors import ConfigError, FieldError
from edgeintel.schema import NodeName, Strict, resolve_file

__all__ = [
    "BaseStationKind",
    "CloudSpec",
    "Device",
    "DeviceGroup",
    "DeviceProfile",
    "EdgeServer",
    "Link",
    "LinkSpec",
    "Topology",
    "TracePoint",
]


# --------------------------------------------------------------------------- links


def _read_trace_csv(path: Path) -> list[TracePoint]:
    """Parse a link trace CSV with columns t_s, bandwidth_mbps[, rtt_ms, loss]."""
    if not path.is_file():
        raise ValueError(f"{path}: not a file (a trace is a CSV file)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a UTF-8 text file (a trace is a CSV file)") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        cols = set(reader.fieldnames or [])
        rows = list(reader)
    except csv.Error as exc:
        raise ValueError(f"{path}: not a valid CSV file ({exc})") from None
    for need in ("t_s", "bandwidth_mbps"):
        if need not in cols:
            raise ValueError(f"{path}: missing column {need!r} (has {sorted(cols)})")
    points = []
    for line, row in enumerate(rows, start=2):
        try:
            points.append(
                TracePoint(
                    t_s=float(row["t_s"]),
                    bandwidth_mbps=float(row["bandwidth_mbps"]),
                    rtt_ms=float(row["rtt_ms"]) if row.get("rtt_ms") else None,
                    loss=float(row["loss"]) if row.get("loss") else None,
                )
            )
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            msg = str(err["msg"]).removeprefix("Value error, ").lower()
            raise ValueError(f"{path}: line {line}: {where}: {msg}") from None
        except (TypeError, ValueError):
            raise ValueError(f"{path}: line {line}: expected finite non-negative numbers") from None
    times = [p.t_s for p in points]
    if not points or any(b <= a for a, b in itertools.pairwise(times)):
        raise ValueError(f"{path}: needs at least one row, with t_s strictly increasing")
    return points


Mbps = Annotated[float, Field(gt=0, le=1e6)]
"""A bandwidth in Mbit/s: above 0, at most 1 Tbit/s."""
RttMs = Annotated[float, Field(ge=0, le=1e6)]
"""A round-trip time in ms: 0 .. 1000 s."""
Loss = Annotated[float, Field(ge=0, lt=1)]
"""A loss fraction below 1 (a link that loses everything is an outage: bandwidth 0)."""
Speed = Annotated[float, Field(gt=0, le=1e4)]
"""Compute speed relative to this machine: above 0, at most 10 000x."""
MemoryMb = Annotated[float, Field(gt=0, le=1e9)]
"""Memory in MB: above 0, at most 1 PB."""
CacheMb = Annotated[float, Field(ge=0, le=1e9)]
"""Cache in MB: 0 .. 1 PB."""
Watts = Annotated[float, Field(ge=0, le=1e5)]
"""Power in W: 0 .. 100 kW."""


class TracePoint(Strict):
    """One step of a time-varying link: from ``t_s`` on, the link has these values
    (``bandwidth_mbps: 0`` is an outage)."""

    t_s: Annotated[float, Field(ge=0, le=1e8)]
    bandwidth_mbps: Annotated[float, Field(ge=0, le=1e6)]
    rtt_ms: RttMs | None = None
    loss: Loss | None = None


class LinkSpec(Strict):
    """Properties of a link; a bandwidth of 0 in a trace step means an outage."""

    bandwidth_mbps: Mbps
    rtt_ms: RttMs = 0.0
    loss: Loss = 0.0
    trace: Annotated[list[TracePoint], Field(max_length=100_000)] | None = None
    trace_file: Path | None = Field(
        default=None, description="CSV with columns t_s, bandwidth_mbps[, rtt_ms, loss]"
    )

    @field_validator("trace_file")
    @classmethod
    def _check_trace_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        path = resolve_file(value, info)
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


class CloudSpec(Strict):
    """The cloud: by default a 64-core server running each request on all its threads,
    4.8x one core (ncnn's MobileNet v1 on an AMD EPYC 7742, 16.35 ms on 1 thread vs 3.39 ms
    on 64; scenarios/default.yaml)."""

    name: NodeName = "cloud"
    compute_speed: Speed = 4.8
    memory_mb: MemoryMb = 65536


class EdgeServer(Strict):
    """An edge server co-located with a macro or micro base station."""

    name: NodeName
    kind: BaseStationKind
    compute_speed: Speed = 1.0
    memory_mb: MemoryMb = 8192
    cache_mb: CacheMb = 1024


class DeviceProfile(Strict):
    """Hardware of a device class; power in W, battery in J, speed relative to this machine."""

    compute_speed: Speed
    memory_mb: MemoryMb
    power_compute_w: Watts
    power_tx_w: Watts
    power_idle_w: Watts
    battery_j: Annotated[float, Field(gt=0, le=1e12)]  # 1 TJ; the simulator counts uJ in int64
    cache_mb: CacheMb = 0.0  # on-device content cache (MiB), a placement tier; 0: none
    # the runtime that runs models on this device (edgeintel.inference.runtimes.RUNTIMES:
    # onnxruntime, openvino, executorch, litert); the scenario checks the name
    runtime: Annotated[str, Field(min_length=1, max_length=64)] = "onnxruntime"


class DeviceGroup(Strict):
    """``count`` devices of one profile attached to one edge server (or the cloud)."""

    name: NodeName
    count: Annotated[int, Field(ge=1, le=100_000)]
    profile: str
    attach: NodeName
    link: LinkSpec = LinkSpec(bandwidth_mbps=20.0, rtt_ms=10.0)


def _is_device_of(name: str, group: DeviceGroup) -> bool:
    """Whether ``name`` is one of ``group``'s device names (``<group>-<0..count-1>``)."""
    prefix = f"{group.name}-"
    if not name.startswith(prefix):
        return False
    index = name[len(prefix) :]
    return index.isdigit() and str(int(index)) == index and int(index) < group.count


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


# --------------------------------------------------------------------------- the graph


@dataclass(frozen=True)
class Topology:
    """The node/link graph of a scenario; ``Scenario.topology`` builds it.

    Field paths in ``check`` errors are those of the scenario file
    (``devices[0].attach``, ``links[1].between``, ...).
    """

    cloud: CloudSpec
    edge_servers: Sequence[EdgeServer]
    device_profiles: Mapping[str, DeviceProfile]
    devices: Sequence[DeviceGroup]
    links: Sequence[Link]

    def check(self) -> None:
        """Unique names, known profiles and nodes, no dangling link, every edge reaches the cloud.

        Raises ``FieldError`` (a ValueError) pointing at the offending field.
        """
        names = [self.cloud.name] + [e.name for e in self.edge_servers]
        seen: set[str] = set()
        for i, name in enumerate(names):
            if name in seen:
                raise FieldError(("edge_servers", i - 1, "name"), f"duplicate node name {name!r}")
            seen.add(name)
        infra = set(names)
        for i, group in enumerate(self.devices):
            if group.profile not in self.device_profiles:
                known = ", ".join(sorted(self.device_profiles)) or "none defined"
                raise FieldError(
                    ("devices", i, "profile"),
                    f"unknown device profile {group.profile!r}; expected one of: {known}",
                )
            if group.attach not in infra:
                raise FieldError(
                    ("devices", i, "attach"),
                    f"unknown node {group.attach!r}; expected an edge server or the cloud "
                    f"({', '.join(sorted(infra))})",
                )
            if group.name in infra:
                raise FieldError(("devices", i, "name"), f"{group.name!r} is already a node name")
        groups = [g.name for g in self.devices]
        for i, g in enumerate(groups):
            if g in groups[:i]:
                raise FieldError(("devices", i, "name"), f"duplicate device group {g!r}")
        for i, group in enumerate(self.devices):  # devices are named <group>-<index>
            clash = next((n for n in sorted(infra) if _is_device_of(n, group)), None)
            if clash is not None:
                raise FieldError(
                    ("devices", i, "name"),
                    f"device {clash!r} of group {group.name!r} has the name of a node; "
                    "rename the group or the node",
                )
        pairs: dict[frozenset[str], int] = {}
        for i, link in enumerate(self.links):
            for end in link.between:
                if end not in infra:
                    raise FieldError(
                        ("links", i, "between"),
                        f"dangling link: unknown node {end!r}; links join the cloud and edge "
                        f"servers ({', '.join(sorted(infra))}); devices use devices[].link",
                    )
            pair = frozenset(link.between)
            if pair in pairs:
                raise FieldError(
                    ("links", i, "between"),
                    f"{' and '.join(link.between)} are already joined by links[{pairs[pair]}]; "
                    "give one link per pair",
                )
            pairs[pair] = i
        reach = self.parents()
        for i, edge in enumerate(self.edge_servers):
            if edge.name not in reach:
                raise FieldError(
                    ("edge_servers", i),
                    f"edge server {edge.name!r} has no link path to the cloud; add a link",
                )

    def _adjacency(self) -> dict[str, list[str]]:
        adj: dict[str, list[str]] = {self.cloud.name: []}
        for e in self.edge_servers:
            adj[e.name] = []
        for link in self.links:
            a, b = link.between
            adj[a].append(b)
            adj[b].append(a)
        return adj

    def parents(self) -> dict[str, str | None]:
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
        parent = self.parents()
        if node not in parent:
            raise ConfigError(f"node {node!r} is not connected to the cloud")
        path = [node]
        while (p := parent[path[-1]]) is not None:
            path.append(p)
        return path

    def links_to_cloud(self, node: str) -> list[Link]:
        """The backhaul links from ``node`` up to the cloud, in order (empty for the cloud)."""
        return [self.link_between(a, b) for a, b in itertools.pairwise(self.path_to_cloud(node))]

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
