"""Runtime settings: the ``settings.runtime`` block of a scenario (server, batching, store).

Units are in the names: ``_us`` microseconds, ``_ms`` milliseconds, ``_s``
seconds, ``_bytes`` bytes. Defaults suit a small shared machine: one ONNX
Runtime intra-op thread per model (server and clients share the cores; default
BLAS threading halved throughput when measured here).
"""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import Field, ValidationInfo, field_validator, model_validator

from edgeintel.errors import EdgeIntelError, FieldError
from edgeintel.schema import Strict as _Strict
from edgeintel.schema import resolve_file

if TYPE_CHECKING:
    from edgeintel.topology import Topology

__all__ = [
    "DEVICES",
    "BatchingSettings",
    "DeployPlacement",
    "DeploySettings",
    "LifecycleSettings",
    "OnFull",
    "RuntimeSettings",
    "ServerSettings",
    "StoreSettings",
    "check_bindable",
    "check_host",
    "parse_address",
]


class BatchingSettings(_Strict):
    """Dynamic batching like Triton's ``dynamic_batching`` block.

    Concurrent requests for one model are grouped up to ``max_batch_size``
    rows or until the first waited ``max_queue_delay_us`` microseconds, then
    run as one ONNX Runtime call. ``max_batch_size: 1`` turns batching off.
    ``queue_capacity`` requests may wait per model; more are answered 503.
    ``adaptive_wait`` (default): never wait; whenever the worker is free it runs what is
    queued, so a lone client pays no delay and under load a batch is what arrived while
    the previous one ran; off, Triton's fixed ``max_queue_delay_us`` wait.
    """

    max_batch_size: Annotated[int, Field(ge=1, le=4096)] = 32
    max_queue_delay_us: Annotated[int, Field(ge=0, le=10_000_000)] = 2000
    queue_capacity: Annotated[int, Field(ge=1, le=1_000_000)] = 1024
    adaptive_wait: bool = True


class ServerSettings(_Strict):
    """An edge or cloud node: ONNX Runtime threads, request limits, shutdown grace.

    ``body_timeout_s``: a request body not received within this time is answered 408
    and its connection closed; ``max_connections``: connections and requests in flight
    beyond this are answered 503 (a slow or hostile client cannot hold the node).
    """

    intra_op_threads: Annotated[int, Field(ge=1, le=256)] = 1
    max_request_bytes: Annotated[int, Field(ge=1024, le=2**32)] = 16 * 1024 * 1024
    body_timeout_s: Annotated[float, Field(gt=0, le=600)] = 10.0
    max_connections: Annotated[int, Field(ge=1, le=1_000_000)] = 1024
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
    (one fsync); an append returns only after its commit. ``encrypt``: results
    waiting in the store are sealed with the device's own key (AES-256-GCM, derived
    from the run's store secret), so a stolen device's backlog reveals nothing.
    """

    ttl_s: Annotated[float, Field(gt=0, le=1e8)] = 24 * 3600.0
    max_records: Annotated[int, Field(ge=1, le=10**9)] = 1_000_000
    on_full: OnFull = OnFull.DROP_OLDEST
    group_commit_ms: Annotated[float, Field(ge=0, le=1000)] = 2.0
    forward_batch: Annotated[int, Field(ge=1, le=100_000)] = 500
    encrypt: bool = False


class DeployPlacement(StrEnum):
    """Where a device's inference runs in a deployed run.

    ``plan``: the offloading planner's options for the device, re-decided per request by
    ``offloading.adapt.AdaptivePolicy`` from the link state the agent observes (local,
    its edge server, the cloud through its edge server, or a split); ``device``,
    ``edge``, ``cloud``: that tier for every request (local fallback on failure).
    """

    PLAN = "plan"
    DEVICE = "device"
    EDGE = "edge"
    CLOUD = "cloud"


DEVICES = "devices"
_HOST_PORT = re.compile(r"^(?P<host>[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\]):(?P<port>[0-9]{1,5})$")


def check_host(host: str) -> str:
    """``host`` if it can be an address: a dotted quad must be a valid IPv4 address
    (``999.1.1.1`` is not), brackets hold an IPv6 address, else a host name; a
    ``ValueError`` saying what is expected otherwise."""
    import ipaddress

    h = host.strip("[]")
    try:
        if re.fullmatch(r"[0-9.]+", h):
            ipaddress.IPv4Address(h)
        elif ":" in h:
            ipaddress.IPv6Address(h)
        elif not re.fullmatch(r"[A-Za-z0-9_.-]{1,253}", h):
            raise ValueError(h)
    except ValueError:
        raise ValueError(
            f"{host!r} is not an IPv4 address (four numbers 0-255), an IPv6 address or a host name"
        ) from None
    return h


def check_bindable(host: str, port: int) -> None:
    """Refuse, before a server loads anything or says it is ready, an address it cannot
    listen on (not an address of this machine, port in use, no permission): one
    ``ValueError`` with the reason."""
    import socket

    h = check_host(host)
    try:
        infos = socket.getaddrinfo(h, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ValueError(f"{host!r}: not an address of this machine ({exc.strerror})") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError as exc:
            raise ValueError(f"{host}:{port}: cannot listen there ({exc.strerror})") from None


def parse_address(value: str) -> tuple[str, int]:
    """``host:port`` -> (host, port); a ``ValueError`` with what is expected otherwise.

    A host of digits and dots must be an IPv4 address (``999.1.1.1`` is refused), one in
    brackets an IPv6 address; other hosts are names."""
    m = _HOST_PORT.match(value.strip())
    if m is None or not 0 < int(m["port"]) < 65536:
        raise ValueError(f"expected host:port with a port in 1..65535, got {value!r}")
    host = m["host"]
    try:
        if host.startswith("["):
            ipaddress.IPv6Address(host.strip("[]"))
        elif re.fullmatch(r"[0-9.]+", host):
            ipaddress.IPv4Address(host)
    except ValueError:
        raise ValueError(f"{host} is not a valid IP address (in {value!r})") from None
    return host.strip("[]"), int(m["port"])


def _same_endpoint(host: str) -> str:
    """A key under which two hosts that reach the same listener compare equal."""
    return "127.0.0.1" if host in ("localhost", "::1") or host.startswith("127.") else host


class ChurnAction(StrEnum):
    """What a device does during a deployed run (``deploy.churn``)."""

    JOIN = "join"  # starts only at ``at_s``
    LEAVE = "leave"  # stops sensing at ``at_s``; what it holds is still delivered
    REBOOT = "reboot"  # stops at once, resumes ``down_s`` later from its store and version


class ChurnEvent(_Strict):
    """One change of the fleet during a deployed run: at ``at_s`` seconds of the run,
    ``device`` (a device name, e.g. ``phone-2``) joins, leaves or reboots.

    A reboot stops the agent at once. No drain happens, and its sessions, queues and
    monitor windows are lost. ``down_s`` later a new agent resumes from the device's store
    (undelivered results, next stream index) and its version record."""

    at_s: Annotated[float, Field(ge=0, le=3600)]
    device: Annotated[str, Field(min_length=1, max_length=200)]
    action: ChurnAction
    down_s: Annotated[float, Field(ge=0, le=3600)] = 2.0


class RetrainSettings(_Strict):
    """The drift -> retrain -> canary loop of a deployed run (``lifecycle.retrain``).

    With ``on_drift`` every agent watches its inputs and outputs (label free) against a
    reference of its first ``reference`` inputs, testing the last ``window`` inputs every
    ``stride`` with at most ``false_alarms_per_hour`` false alarms; its drift state goes
    to its edge server with each delivery. When half of a group's devices at a server
    drift, the run fine-tunes the deployed model by ``rounds`` federated rounds
    (``local_steps`` steps of ``batch_size`` at ``lr`` per device) over each drifted
    device's last ``fresh_inputs`` labelled inputs (feedback labels; no device's data
    pooled with another's), exports and signs it as the next version and rolls it out
    through ``stages`` (the first is the canary), judged by the guards after
    ``min_results`` results per version and look (``looks`` per stage).

    ``shift_at_s``: the drift the run plays (None: none is played). From that second each
    device's stream goes on with the shard of the device half the fleet away: another
    wearer's, camera's or site's real recordings, a real change of subjects and class mix.
    """

    on_drift: bool = False
    shift_at_s: Annotated[float, Field(ge=0, le=3600)] | None = None
    reference: Annotated[int, Field(ge=10, le=100_000)] = 100
    window: Annotated[int, Field(ge=10, le=100_000)] = 50
    stride: Annotated[int, Field(ge=1, le=100_000)] = 25
    false_alarms_per_hour: Annotated[float, Field(gt=0, le=3600)] = 1.0
    fresh_inputs: Annotated[int, Field(ge=4, le=1_000_000)] = 200
    rounds: Annotated[int, Field(ge=1, le=1000)] = 5
    local_steps: Annotated[int, Field(ge=1, le=10_000)] = 10
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 16
    lr: Annotated[float, Field(gt=0, le=10)] = 0.05
    stages: tuple[Annotated[float, Field(gt=0, le=1)], ...] = (0.5, 1.0)
    min_results: Annotated[int, Field(ge=1, le=10**6)] = 20
    looks: Annotated[int, Field(ge=1, le=100)] = 1

    @model_validator(mode="after")
    def _window_in_reference(self) -> RetrainSettings:
        if 2 * self.window > self.reference:
            raise FieldError(
                ("window",),
                f"a test window of {self.window} inputs is calibrated on windows resampled "
                f"from the reference; expected window <= reference / 2 ({self.reference // 2})",
            )
        return self


class LifecycleSettings(_Strict):
    """A deployed run's model lifecycle check (``settings.runtime.deploy.lifecycle``).

    When ``enabled``, the agents follow their edge server's rollouts, and ``after_s``
    seconds into the run version 2 of the model (the same weights, signed anew) is rolled
    out on every edge server through ``stages`` (the first is the canary), judged after
    ``min_results`` results of each version per look (``looks`` per stage); then, with
    ``bad_version``, version 3, the model with its output classes shifted by one (a
    deliberately wrong model), is rolled out the same way and must be rolled back. What
    each server decided, and why, is in ``results.runtime.lifecycle`` and the report.
    """

    enabled: bool = False
    after_s: Annotated[float, Field(ge=0, le=3600)] = 1.0
    stages: tuple[Annotated[float, Field(gt=0, le=1)], ...] = (0.5, 1.0)
    min_results: Annotated[int, Field(ge=1, le=10**6)] = 20
    looks: Annotated[int, Field(ge=1, le=100)] = 1
    bad_version: bool = True
    retrain: RetrainSettings = RetrainSettings()

    @model_validator(mode="after")
    def _one_driver(self) -> LifecycleSettings:
        if self.enabled and self.retrain.on_drift:
            raise FieldError(
                ("retrain", "on_drift"),
                "the retrain loop's rollouts would overlap the scripted versions 2 and 3 of "
                "lifecycle.enabled; turn one of them off",
            )
        return self


class DeploySettings(_Strict):
    """``edgeintel run`` deploys the scenario when ``enabled``: one server process per serving
    node (edge servers with devices attached, and the cloud when some device may use it),
    device agents for ``duration_s`` seconds, links emulated from the scenario when
    ``emulate_links``. ``max_devices`` caps the agents (None: every device).

    ``placement`` applies to every device group unless ``placements`` names the group.
    ``trace_time_scale``: link traces advance this many seconds per second of the run
    (10 plays a 150 s trace with its outage in a 15 s run). ``addresses`` maps a node
    name to ``host:port`` where it listens (several machines; default: a free loopback
    port); ``only`` starts a subset: node names and/or ``devices`` (the agents), the
    other nodes being reached at their ``addresses``. ``tokens_file``: a JSON/YAML
    tokens file shared by the machines of one deployment (default: fresh tokens).
    ``signing_key``: the Ed25519 private key (PEM) that signs the run's model files
    (default: a fresh key in the run folder); servers and agents load only files with
    a valid signature by it. ``tls`` (on by default): every hop (device -> edge ->
    cloud, readiness and statistics probes) over mutual TLS with certificates the run
    issues in ``<run>/runtime/pki`` from a fresh scenario CA, or from ``tls_ca`` (a PEM
    CA certificate with its ``ca.key`` beside it, shared by the machines of one
    deployment); ``tls: false`` is plaintext, and the results say so.
    """

    enabled: bool = False
    duration_s: Annotated[float, Field(gt=0, le=3600)] = 10.0
    placement: DeployPlacement = DeployPlacement.EDGE
    placements: dict[str, DeployPlacement] = Field(default_factory=dict)
    emulate_links: bool = True
    trace_time_scale: Annotated[float, Field(gt=0, le=1000)] = 1.0
    max_devices: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    drain_timeout_s: Annotated[float, Field(ge=0, le=600)] = 15.0
    addresses: dict[str, str] = Field(default_factory=dict)
    only: list[str] | None = None
    tokens_file: Path | None = None
    signing_key: Path | None = None
    tls: bool = True
    tls_ca: Path | None = None
    lifecycle: LifecycleSettings = LifecycleSettings()
    churn: Annotated[list[ChurnEvent], Field(max_length=10_000)] = Field(default_factory=list)

    @field_validator("addresses")
    @classmethod
    def _addresses(cls, v: dict[str, str]) -> dict[str, str]:
        seen: dict[tuple[str, int], str] = {}
        for node, addr in v.items():
            try:
                host, port = parse_address(addr)
            except ValueError as exc:
                raise ValueError(f"address of {node!r}: {exc}") from None
            key = (_same_endpoint(host), port)
            if key in seen:
                raise ValueError(
                    f"{node!r} and {seen[key]!r} both listen at {addr}; give each node its own "
                    "host:port"
                )
            seen[key] = node
        return v

    @field_validator("only")
    @classmethod
    def _only(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not v:
            raise ValueError(
                f"give at least one node or '{DEVICES}' to start here, or leave 'only' out "
                "(start everything)"
            )
        if v is not None and len(set(v)) != len(v):
            raise ValueError(f"names repeat: {v}")
        return v

    @field_validator("tokens_file")
    @classmethod
    def _tokens_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        """Relative to the scenario's folder, like every path of a scenario; its content
        (a mapping of name -> token of >= 16 characters) is checked when it is loaded."""
        path = resolve_file(value, info)
        if path is not None:
            from edgeintel.runtime.auth import load_tokens  # light: yaml and hmac

            try:
                load_tokens(path)
            except EdgeIntelError as exc:
                raise ValueError(str(exc)) from None
        return path

    @field_validator("signing_key")
    @classmethod
    def _signing_key(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        """Relative to the scenario's folder; must hold an Ed25519 private key."""
        path = resolve_file(value, info)
        if path is not None:
            from edgeintel.security.signing import load_signing_key

            try:
                load_signing_key(path)
            except EdgeIntelError as exc:
                raise ValueError(str(exc)) from None
        return path

    @field_validator("tls_ca")
    @classmethod
    def _tls_ca(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        """Relative to the scenario's folder; a CA certificate with its key beside it."""
        path = resolve_file(value, info)
        if path is not None:
            from edgeintel.security.pki import check_ca

            check_ca(path)  # a ValueError says what is wrong
        return path

    def placement_of(self, group: str) -> DeployPlacement:
        return self.placements.get(group, self.placement)

    def starts(self, name: str) -> bool:
        """Whether this process starts node ``name`` (or the agents, ``devices``)."""
        return self.only is None or name in self.only

    def check_scenario(self, topology: Topology) -> None:
        """Names of nodes, groups and ``only`` exist; the agents can reach the nodes they
        need; the tokens file gives every agent its own token."""
        sc = topology
        nodes = {sc.cloud.name, *(e.name for e in sc.edge_servers)}
        groups = {g.name for g in sc.devices}
        for node in self.addresses:
            if node not in nodes:
                raise FieldError(
                    ("addresses", node),
                    f"unknown node {node!r}; expected one of: {', '.join(sorted(nodes))}",
                )
        for group in self.placements:
            if group not in groups:
                raise FieldError(
                    ("placements", group),
                    f"unknown device group {group!r}; expected one of: {', '.join(sorted(groups))}",
                )
        for item in self.only or []:
            if item != DEVICES and item not in nodes:
                raise FieldError(
                    ("only",),
                    f"unknown {item!r}; expected '{DEVICES}' or a node: {', '.join(sorted(nodes))}",
                )
        if self.only is not None and DEVICES in self.only:
            needed = {d.attach for d in sc.expand_devices()}
            missing = sorted(n for n in needed if n not in self.only and n not in self.addresses)
            if missing:
                raise FieldError(
                    ("addresses",),
                    f"the agents need the address of {', '.join(missing)} "
                    "(not started here): give --address NODE=HOST:PORT",
                )
        if self.tokens_file is not None:
            self._check_tokens(sc)
        self._check_churn(sc)
        if self.tls_ca is not None and not self.tls:
            raise FieldError(
                ("tls_ca",), "a CA for mutual TLS, but tls is false: set tls: true or drop tls_ca"
            )

    def _check_churn(self, topology: Topology) -> None:
        """Churn names agents of this deployment; a device joins only once, first, and
        nothing happens to it after it leaves."""
        agents = [d.name for d in topology.expand_devices()][: self.max_devices]
        known = set(agents)
        seen: dict[str, list[ChurnAction]] = {}
        order = sorted(range(len(self.churn)), key=lambda k: self.churn[k].at_s)
        for k in order:
            ev = self.churn[k]
            if ev.device not in known:
                raise FieldError(
                    ("churn", k, "device"),
                    f"unknown device {ev.device!r}; expected an agent of this deployment "
                    f"({agents[0]}..{agents[-1]})",
                )
            past = seen.setdefault(ev.device, [])
            if ev.action is ChurnAction.JOIN and past:
                raise FieldError(
                    ("churn", k, "action"),
                    f"{ev.device} joins after other events; a join must be its first event",
                )
            if ChurnAction.LEAVE in past:
                raise FieldError(
                    ("churn", k, "action"), f"{ev.device} has left before {ev.at_s:g} s"
                )
            past.append(ev.action)
            if ev.at_s >= self.duration_s:
                raise FieldError(
                    ("churn", k, "at_s"),
                    f"{ev.at_s:g} s is not within the run; expected < duration_s "
                    f"({self.duration_s:g})",
                )

    def _check_tokens(self, topology: Topology) -> None:
        """Every agent this deployment starts has a token, and no two holders share one
        (a shared token delivers one device's results under the other's name)."""
        from edgeintel.runtime.auth import load_tokens

        table = load_tokens(self.tokens_file)
        assert table is not None
        agents = [d.name for d in topology.expand_devices()][: self.max_devices]
        missing = [d for d in agents if d not in table.devices]
        if missing:
            more = "..." if len(missing) > 3 else ""
            raise FieldError(
                ("tokens_file",),
                f"{self.tokens_file}: no token for device {', '.join(missing[:3])}{more}",
            )
        holders: dict[str, str] = {}
        for section, entries in table.to_json().items():
            for name, token in entries.items():
                if token in holders:
                    raise FieldError(
                        ("tokens_file",),
                        f"{self.tokens_file}: {holders[token]} and {section}.{name} have the "
                        "same token; give every holder its own",
                    )
                holders[token] = f"{section}.{name}"


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
    offload_timeout_ms: Annotated[float, Field(gt=0, le=1e7)] = 500.0
    deploy: DeploySettings = DeploySettings()

    def check_scenario(self, topology: Topology) -> None:
        """The deployment's names, addresses and tokens (see ``DeploySettings``)."""
        try:
            self.deploy.check_scenario(topology)
        except FieldError as err:
            raise FieldError(("deploy", *err.loc), err.msg) from None
