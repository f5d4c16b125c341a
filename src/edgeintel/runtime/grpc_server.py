"""The gRPC face's server: HTTP/2 connections (``runtime.grpc_wire``) on the event loop
that serves HTTP, calling ``GrpcApi``'s coroutines directly.

No thread and no other event loop is involved: a call is decoded, run and answered on
the loop, as an HTTP request is, so both faces share one batcher, cache and set of
statistics and cost the server alike (docs/runtime.md). ``GrpcService`` maps each
``:path`` (``/inference.GRPCInferenceService/<Method>``) to its request type and
coroutine; methods ``GrpcApi`` does not implement answer UNIMPLEMENTED. Handlers get a
``CallContext`` (what they used of grpc's: ``invocation_metadata``, ``auth_context``
with the client certificate, ``await abort(code, details)``). A revoked client
certificate is refused (UNAUTHENTICATED) before the method runs
(``security.mtls.grpc_refusal``). TLS is the loop's, with the node's mutual-TLS context
and ALPN ``h2`` (``TlsFiles.grpc_server_context``).
"""

from __future__ import annotations

import asyncio
import inspect
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import grpc
from tritonclient.grpc import service_pb2 as pb

from edgeintel.runtime.grpc_api import GrpcApi
from edgeintel.runtime.grpc_wire import GrpcConnection
from edgeintel.runtime.h2_conn import CONN_WINDOW, IDLE_TIMEOUT_S, Status
from edgeintel.runtime.http_wire import BufferedReader

if TYPE_CHECKING:
    from edgeintel.runtime.server import InferenceServer

__all__ = ["Abort", "CallContext", "GrpcServer", "GrpcService", "Route", "start_grpc", "stop_grpc"]

SERVICE = "inference.GRPCInferenceService"


class Abort(Exception):
    """``CallContext.abort``: the call ends with gRPC status ``code`` (an int)."""

    def __init__(self, code: int, details: str) -> None:
        super().__init__(details)
        self.code, self.details = code, details


class CallContext:
    """What ``GrpcApi``'s coroutines use of a ``grpc.ServicerContext``."""

    __slots__ = ("_auth", "_metadata")

    def __init__(self, metadata: tuple[tuple[str, Any], ...], auth: dict[str, list[bytes]]):
        self._metadata, self._auth = metadata, auth

    def invocation_metadata(self) -> tuple[tuple[str, Any], ...]:
        """The request's metadata: (lower-case key, value) pairs (``-bin`` values bytes)."""
        return self._metadata

    def auth_context(self) -> dict[str, list[bytes]]:
        """``{"x509_pem_cert": [PEM]}`` over mutual TLS, as grpc's; else empty."""
        return self._auth

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Abort(code.value[0], details)


class Route(NamedTuple):
    """One method: its request type's parser, its coroutine, whether it streams."""

    parse: Callable[[bytes], Any]
    method: Callable[..., Any]
    stream: bool


class GrpcService:
    """The routes and limits every connection of one gRPC port shares."""

    def __init__(self, server: InferenceServer, revocations: Any = None) -> None:
        self.server = server
        self.api = GrpcApi(server)
        self.loop = asyncio.get_running_loop()
        self.revocations = revocations
        self.routes: dict[bytes, Route] = {}
        for m in pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods:
            parse = getattr(pb, m.input_type.name).FromString
            path = f"/{SERVICE}/{m.name}".encode()
            if m.name == "ModelStreamInfer":
                self.routes[path] = Route(parse, self.api.stream_one, True)
            elif inspect.iscoroutinefunction(getattr(self.api, m.name)):
                self.routes[path] = Route(parse, getattr(self.api, m.name), False)
        self.unimplemented = Route(bytes, self.api.ServerLive, False)  # never called
        s = server.settings
        self.max_message = s.max_request_bytes  # bytes of one request message
        self.max_streams = s.max_connections  # calls at once per connection
        self.max_connections = s.max_connections
        self.body_timeout_s = s.body_timeout_s
        self.buffer_limit = self.max_message + 5 + CONN_WINDOW  # unfinished request bytes
        self.tick_s = max(0.05, min(IDLE_TIMEOUT_S, self.body_timeout_s) / 4)
        self.connections: set[Any] = set()  # GrpcConnection

    def context(
        self, metadata: tuple[tuple[str, Any], ...], auth: dict[str, list[bytes]]
    ) -> CallContext:
        return CallContext(metadata, auth)

    def refusal(self, ctx: CallContext) -> str | None:
        """Why a call is refused before its method runs (revoked or no certificate)."""
        if self.revocations is None:
            return None
        from edgeintel.security.mtls import grpc_refusal

        return grpc_refusal(ctx, self.revocations)

    def failure(self, exc: BaseException, where: str) -> tuple[int, str]:
        """The gRPC status of a method's exception: an abort's own, else INTERNAL (a bug,
        logged)."""
        if isinstance(exc, Abort):
            return exc.code, exc.details
        if isinstance(exc, asyncio.CancelledError):
            return Status.CANCELLED, "cancelled"
        self.server.event("error", endpoint=f"grpc.{where}", error=repr(exc))
        return Status.INTERNAL, f"internal error: {exc.__class__.__name__}"

    def outcome(self, task: asyncio.Task[Any]) -> tuple[int, str]:
        """(status, details) of a finished unary method's task (OK: its result is the
        response)."""
        if task.cancelled():
            return Status.CANCELLED, "cancelled"
        exc = task.exception()
        if exc is None:
            return Status.OK, ""
        return self.failure(exc, task.get_coro().__qualname__)  # type: ignore[union-attr]

    def connection(self) -> BufferedReader:
        """A new connection's protocol (reads land in the loop thread's reused buffer)."""
        return BufferedReader(GrpcConnection(self))


class GrpcServer:
    """A listening gRPC port: its ``asyncio.Server`` and ``GrpcService``."""

    def __init__(self, listener: asyncio.Server, service: GrpcService) -> None:
        self.listener, self.service = listener, service


async def start_grpc(
    server: InferenceServer,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None = None,
    revocations: Any = None,
) -> tuple[GrpcServer, int]:
    """Serve ``server``'s gRPC face on ``host:port`` (0: a free port) from the running
    event loop; (the server, the bound port). ``ssl_context``: TLS (ALPN ``h2``);
    ``revocations``: calls from a revoked client certificate are refused
    (UNAUTHENTICATED). Stop it with ``stop_grpc``."""
    service = GrpcService(server, revocations)
    listener = await service.loop.create_server(
        service.connection, host, port, ssl=ssl_context, backlog=2048
    )
    bound = listener.sockets[0].getsockname()[1]
    return GrpcServer(listener, service), bound


async def stop_grpc(g: GrpcServer, grace_s: float) -> None:
    """Stop accepting connections, send every connection GOAWAY (NO_ERROR) and let the
    calls in flight finish, for at most ``grace_s``; then close what is left."""
    g.listener.close()
    conns = list(g.service.connections)
    for c in conns:
        c.goaway()
    waits = [c.closed for c in conns if not c.closed.done()]
    if waits:
        await asyncio.wait(waits, timeout=grace_s)
    for c in list(g.service.connections):
        c.raw.abort()
    await g.listener.wait_closed()
