"""``edgeintel serve``: an edge or cloud node speaking the Open Inference Protocol v2.

``InferenceServer`` composes the node's parts, each its own object and testable alone:
``Authenticator`` (tokens), ``InferenceCore`` (models, batching, result cache,
statistics), ``Relay`` and ``SinkForwarder`` (the upstream link), ``ResultSink``
(forwarded results), ``ServerMetrics`` and ``LiveStats`` (Prometheus, dashboard). Its
faces are the HTTP app (``runtime.http_api``) and the gRPC service
(``runtime.grpc_api``), started in one process by ``serve``.

Endpoints (KServe / Triton HTTP/REST, with the binary-data extension):

* ``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``
* ``GET /v2/models/{name}[/versions/{v}]`` metadata, ``.../ready``, ``.../config``,
  ``.../stats``; ``GET /v2/models/stats``
* ``POST /v2/models/{name}[/versions/{v}]/infer``
* ``POST /v2/repository/index``, ``POST /v2/repository/models/{name}/load|unload``
* ``POST /v1/results`` (devices forward their stored results; idempotent by key; the
  answer's ``assign`` names the version each model under a rollout should run there)
* ``POST /v1/rollout`` (operator: start a rollout, ``RolloutSettings`` as JSON), ``GET
  /v1/rollout`` (its stages, guard figures, rollbacks and every device's version),
  ``GET /v1/models/{name}/versions/{v}/artifact`` (a version's file for a device's
  over-the-air update, sha256 and signature in headers)
* ``GET /metrics`` (Prometheus), ``GET /v2/stats`` (JSON) and ``GET /dashboard`` (live page)

Errors are ``{"error": "..."}`` with a 4xx status (503 when a queue is full
or the node is shutting down, 502 when a relayed request finds no upstream).
With tokens configured, model and result endpoints need ``Authorization: Bearer
<token>`` of a known device (or relaying node), and /metrics, /v2/stats and
/dashboard an operator's token (the dashboard also takes ``?token=`` once and
keeps it in a cookie), repository load/unload an operator's; health endpoints stay
open (401 otherwise). Bodies above ``max_request_bytes`` are refused with 413 before
being read.

An edge server with an ``upstream`` (the cloud, over its emulated backhaul)
relays infer requests carrying ``X-Edgeintel-Forward: <upstream name>`` and
forwards the results its sink stored to the upstream's ``/v1/results``
(store-and-forward again, one hop up); bytes each way are counted per link.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from starlette.applications import Starlette

from edgeintel.errors import ConfigError
from edgeintel.runtime.auth import Authenticator, Tokens
from edgeintel.runtime.core import CacheFactory, Features, InferenceCore, ServeError
from edgeintel.runtime.dashboard import LiveStats
from edgeintel.runtime.drift_watch import DriftBook
from edgeintel.runtime.metrics import ServerMetrics
from edgeintel.runtime.protocol import ProtocolError
from edgeintel.runtime.relay import FORWARD_HEADER, Relay, SinkForwarder
from edgeintel.runtime.repository import ModelRepository
from edgeintel.runtime.rollout import Rollout, RolloutManager, RolloutSettings
from edgeintel.runtime.seams import ResultCache
from edgeintel.runtime.settings import ServerSettings
from edgeintel.runtime.sink import ResultSink, check_results
from edgeintel.runtime.transport import Transport

if TYPE_CHECKING:
    from edgeintel.security.pki import TlsFiles

__all__ = [
    "EXTENSIONS",
    "FORWARD_HEADER",
    "SERVER_NAME",
    "InferenceServer",
    "NodeOptions",
    "build_app",
    "serve",
]

SERVER_NAME = "edgeintel"
SERVER_VERSION = "0.1.0"
EXTENSIONS = ["binary_tensor_data", "model_repository", "statistics", "model_configuration"]
log = logging.getLogger("edgeintel.runtime.server")


class InferenceServer:
    """One serving node: its parts and their lifecycle (``lifespan``).

    ``tokens``: device name -> bearer token, or a ``Tokens`` table with relaying nodes
    and operators. ``cache`` / ``features``: see ``InferenceCore``. ``sink_path``: the
    SQLite file of forwarded results (None: results are refused with 404).
    ``upstream``: the transport to ``upstream_name`` (the cloud, usually over a
    ``LinkEmulator`` of the backhaul), used to relay requests and to forward stored
    results with ``upstream_token``. ``grpc_port``: also serve the gRPC protocol there
    (0: a free port, read ``grpc_port`` after start; None: no gRPC).
    ``grpc_ssl``: TLS on the gRPC port (an ``ssl.SSLContext`` with ALPN ``h2``);
    ``grpc_revocations``: its calls refused when the client certificate's serial is
    revoked (``security.pki.Revocations``, the CRL the HTTP face reloads too).
    ``on_drift(group, figures)``: called when enough devices of a group report drift
    (``DriftBook``).
    """

    def __init__(
        self,
        repository: ModelRepository,
        settings: ServerSettings | None = None,
        tokens: dict[str, str] | Tokens | None = None,
        cache: ResultCache | CacheFactory | None = None,
        sink_path: str | Path | None = None,
        features: Features | None = None,
        node: str | None = None,
        upstream: Transport | None = None,
        upstream_name: str | None = None,
        upstream_token: str | None = None,
        grpc_host: str = "127.0.0.1",
        grpc_port: int | None = None,
        grpc_ssl: Any = None,
        grpc_revocations: Any = None,
        on_drift: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.settings = settings or ServerSettings()
        table = tokens if isinstance(tokens, Tokens) else Tokens(devices=dict(tokens or {}))
        self.metrics = ServerMetrics()
        self.board = LiveStats()
        self.auth = Authenticator(table, on_device=self.metrics.device_request)
        self.core = InferenceCore(
            repository, self.settings, self.metrics, self.board, cache, features
        )
        self.rollouts = RolloutManager(repository.versions, repository.pin)
        self.drift = DriftBook()
        self.on_drift = on_drift  # called with (group, its figures) when a retrain is due
        self.node = node
        self.relay = Relay(upstream, upstream_name, self.metrics, self.board) if upstream else None
        self.upstream_token = upstream_token
        self.sink_path = sink_path
        self.sink: ResultSink | None = None
        self.forwarder: SinkForwarder | None = None
        self.grpc_host, self.grpc_port, self.grpc_ssl = grpc_host, grpc_port, grpc_ssl
        self.grpc_revocations = grpc_revocations
        self._grpc: Any = None

    @staticmethod
    def event(event: str, **fields: Any) -> None:
        """One structured (JSON) log line."""
        log.info(json.dumps({"event": event, "t": round(time.time(), 3), **fields}, default=str))

    def metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": EXTENSIONS}

    def is_ready(self) -> bool:
        return self.core.ready and bool(self.core.repository.models)

    async def ingest(self, device: str | None, msg: Any) -> tuple[int, int, dict[str, str]]:
        """Store a ``/v1/results`` message durably: (accepted, duplicates, assignment).
        ``device``: the authenticated device (None: auth off or a relaying node). The
        results (and the message's ``status``: the device's model, version and refused
        versions) feed the rollouts; the assignment maps each model under a rollout to
        the version the sending device should run."""
        try:
            name, records = check_results(msg, device)
        except PermissionError as exc:
            raise ServeError(401, str(exc)) from None
        except ValueError as exc:
            raise ProtocolError(str(exc)) from None
        if self.sink is None:
            raise ServeError(404, "this node does not accept forwarded results (no sink)")
        accepted, dup = await asyncio.get_running_loop().run_in_executor(
            None, self.sink.ingest, name, records
        )
        label = self.metrics.device_name(name)
        self.board.results(label, accepted, dup)
        self.metrics.ingested(name, accepted, dup)
        before = {m: r.state for m, r in self.rollouts.rollouts.items()}
        status = msg.get("status")
        self.rollouts.ingest(name, records, status)
        report = status.get("drift") if isinstance(status, dict) else None
        group = self.drift.ingest(name, report, time.time())
        if group is not None:
            figures = self.drift.groups()[group]
            self.event("drift.retrain_due", group=group, **figures)
            if self.on_drift is not None:
                self.on_drift(group, figures)
        for m, r in self.rollouts.rollouts.items():
            if before.get(m) != r.state:
                self.event(f"rollout.{r.state}", model=m, version=r.candidate, reason=r.reason)
        return accepted, dup, self.rollouts.assignment(name)

    def lifecycle_summary(self) -> dict[str, Any]:
        """What the dashboard shows of the fleet's lifecycle: each model's rollout (state,
        versions, share, reason), each device's versions, drift per device group."""
        self.rollouts.step()
        return {
            "rollouts": {
                m: {"state": str(r.state), "stable": r.stable, "candidate": r.candidate,
                    "share": r.share, "reason": r.reason}
                for m, r in self.rollouts.rollouts.items()
            },
            "versions": {d: dv.versions for d, dv in self.rollouts.devices.items()},
            "drift": self.drift.groups(),
        }  # fmt: skip

    async def start_rollout(self, settings: RolloutSettings) -> Rollout:
        """Begin rolling ``settings.version`` out: the model folder is reloaded hot (the new
        version verified, and signed when the node verifies signatures) while unversioned
        requests stay on the current default, which becomes the rollout's stable version."""
        repo = self.core.repository
        try:
            stable = repo.default_version(settings.model)
        except KeyError as exc:
            raise ServeError(404, str(exc.args[0])) from None
        repo.pin(settings.model, stable)
        await self.core.load(settings.model)
        if settings.version not in repo.versions(settings.model):
            why = repo.refused.get(f"{settings.model}/{settings.version}", "no such folder")
            raise ServeError(400, f"version {settings.version} of {settings.model!r}: {why}")
        try:
            r = self.rollouts.start(settings, stable)
        except ConfigError as exc:
            raise ServeError(409, str(exc)) from None
        self.event("rollout.started", model=settings.model, stable=stable, version=r.candidate)
        return r

    async def start(self) -> None:
        if self.sink_path is not None:
            self.sink = ResultSink(self.sink_path)
            if self.relay is not None:
                self.forwarder = SinkForwarder(
                    self.sink, self.relay.upstream, self.upstream_token, self.board, self.metrics
                )
                self.forwarder.start()
        if self.grpc_port is not None:
            from edgeintel.runtime.grpc_server import start_grpc

            self._grpc, self.grpc_port = await start_grpc(
                self, self.grpc_host, self.grpc_port, self.grpc_ssl, self.grpc_revocations
            )
        self.core.ready = True
        repo = self.core.repository
        self.event(
            "serve.ready",
            models={n: repo.versions(n) for n in repo.models},
            refused=repo.refused,
            grpc_port=self.grpc_port,
        )

    async def stop(self) -> None:
        self.core.ready = False
        if self._grpc is not None:
            from edgeintel.runtime.grpc_server import stop_grpc

            await stop_grpc(self._grpc, self.settings.graceful_shutdown_s)
        await self.core.close()
        if self.forwarder is not None:
            self.forwarder.stop()
        if self.relay is not None:
            self.relay.close()
        if self.sink is not None:
            self.sink.close()
        self.event("serve.stopped")

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    def http_app(self) -> Starlette:
        from edgeintel.runtime.http_api import HttpApi

        return HttpApi(self).app()


class NodeOptions(TypedDict, total=False):
    """The parts of a node that ``build_app`` and ``serve`` hand to ``InferenceServer``
    (see its docstring), by keyword."""

    tokens: dict[str, str] | Tokens | None
    cache: ResultCache | CacheFactory | None
    sink_path: str | Path | None
    features: Features | None
    node: str | None
    upstream: Transport | None
    upstream_name: str | None
    upstream_token: str | None
    grpc_port: int | None


def build_app(
    repository: ModelRepository,
    settings: ServerSettings | None = None,
    **options: Unpack[NodeOptions],
) -> Starlette:
    """The ASGI app of one node (``InferenceServer(...).http_app()``; the server object is
    ``app.state.server``)."""
    return InferenceServer(repository, settings, **options).http_app()


def _check_port(host: str, port: int, what: str) -> None:
    """``ConfigError`` (one line) when ``host:port`` cannot be bound now."""
    import socket

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.bind((host, port))
    except OSError as exc:
        why = exc.strerror or exc.__class__.__name__
        raise ConfigError(f"{what} {port}: cannot listen on {host}:{port} ({why})") from None


def serve(
    repository: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: ServerSettings | None = None,
    *,
    tls: TlsFiles | None = None,
    verify: Callable[[Path], None] | None = None,
    **options: Unpack[NodeOptions],
) -> None:
    """Load the repository and run the node until SIGINT/SIGTERM (graceful: in-flight
    requests finish, for at most ``graceful_shutdown_s``). ``grpc_port``: the gRPC
    protocol on that port of ``host`` too. ``tls``: mutual TLS on both ports (a client
    certificate by the CA required; revoked ones, per the reloaded CRL, disconnected);
    ``verify(path)``: each model file's check before loading (signatures). The other
    arguments are ``InferenceServer``'s."""
    import uvicorn

    from edgeintel.runtime.http_wire import WireProtocol, buffered

    settings = settings or ServerSettings()
    grpc_port = options.get("grpc_port")
    if grpc_port:
        _check_port(host, grpc_port, "--grpc-port")
    repo = ModelRepository(repository, settings.intra_op_threads, verify)
    revocations = None
    if tls is not None:
        from edgeintel.security.pki import Revocations

        revocations = Revocations(tls.crl, tls.ca)  # one CRL for both faces
    for key, why in repo.refused.items():
        InferenceServer.event("model.refused", model=key, reason=why)
    server = InferenceServer(
        repo,
        settings,
        grpc_host=host,
        grpc_ssl=None if tls is None else tls.grpc_server_context(),
        grpc_revocations=revocations,
        **options,
    )
    app = server.http_app()
    http: Any = buffered(WireProtocol)
    if tls is not None:
        from edgeintel.security.mtls import mtls_protocol

        assert revocations is not None
        http = buffered(mtls_protocol(revocations, WireProtocol))
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http=http,
        access_log=False,
        log_level="warning",
        # nothing reads the client's address, so uvicorn's X-Forwarded-For rewriting is
        # pure cost (an ipaddress parse per request: ~8% of server CPU per inference)
        proxy_headers=False,
        timeout_graceful_shutdown=int(settings.graceful_shutdown_s) or None,
        backlog=2048,
        limit_concurrency=settings.max_connections,
        ssl_certfile=None if tls is None else str(tls.cert),
        ssl_keyfile=None if tls is None else str(tls.key),
    )
    if tls is not None:
        config.load()
        config.ssl = tls.server_context()  # requires the client's certificate (uvicorn's is 1.3+)
    # What startup built (modules, models, the app: ~76k objects) lives as long as the node:
    # freezing it keeps the garbage collector's full collections, which per-request objects
    # still in flight trigger every second or two under load, from walking it each time
    # (measured at 64 clients: gen-2 pauses up to 181 ms and p99 234 ms before, 73 ms after)
    gc.collect()
    gc.freeze()
    uvicorn.Server(config).run()
