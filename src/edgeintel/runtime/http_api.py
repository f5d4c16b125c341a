"""The HTTP/REST face of a serving node (Open Inference Protocol v2 with the binary-data,
model repository, statistics and model configuration extensions).

``HttpApi(server).app()`` is the Starlette app. Endpoint functions only read the
request (body with its limits, headers, tokens) and call the node's parts
(``InferenceServer``: auth, core, relay, sink, metrics); every failure becomes a
``{"error": "..."}`` body with a 4xx status (503 when a queue is full or the node is
not ready, 502 when a relayed request finds no upstream). A body is read within
``body_timeout_s`` (408 and the connection closed otherwise), at most
``max_request_bytes`` after decompression (``Content-Encoding: gzip`` / ``deflate``).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from edgeintel.runtime.auth import Unauthorized, bearer
from edgeintel.runtime.batching import QueueFull
from edgeintel.runtime.core import ServeError
from edgeintel.runtime.dashboard import DASHBOARD_HTML
from edgeintel.runtime.metrics import CONTENT_TYPE_LATEST
from edgeintel.runtime.protocol import (
    HEADER_LENGTH,
    ProtocolError,
    decode_request,
    encode_response,
    loads_strict,
)
from edgeintel.runtime.relay import FORWARD_HEADER, TIMEOUT_HEADER, parse_timeout
from edgeintel.security.mtls import peer_identity

if TYPE_CHECKING:
    from edgeintel.runtime.server import InferenceServer

__all__ = ["DISCONNECTED", "TOKEN_COOKIE", "HttpApi", "json_response"]

TOKEN_COOKIE = "edgeintel_token"
DISCONNECTED = 499  # the client went away before the answer (nginx's code; not a 5xx)
_DIGITS = re.compile(r"[0-9]{1,19}")
_ENCODINGS = {"gzip": 31, "x-gzip": 31, "deflate": 15}
Handler = Callable[[Request], Awaitable[Response]]


class _Disconnected(Exception):
    pass


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response; never emits NaN/Infinity (``ValueError`` instead: a bug)."""
    body = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
    return Response(body, status, headers=headers, media_type="application/json")


def _error(status: int, message: str) -> Response:
    headers = {"Connection": "close"} if status in (408, 413) else None
    return json_response({"error": message}, status, headers)


def ascii_int(raw: str, what: str) -> int:
    """A header's non-negative decimal integer (ASCII digits only: ``²`` is not one)."""
    value = raw.strip()
    if not _DIGITS.fullmatch(value):
        raise ProtocolError(f"{what} must be a non-negative integer, got {raw[:20]!r}")
    return int(value)


def _inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """Decompress a gzip / deflate body to at most ``limit`` bytes (413 beyond)."""
    wbits = _ENCODINGS[encoding]
    for bits in (wbits, -15) if encoding == "deflate" else (wbits,):  # zlib, then raw deflate
        d = zlib.decompressobj(bits)
        try:
            out = d.decompress(body, limit + 1)
        except zlib.error:
            continue
        if len(out) > limit or d.unconsumed_tail:
            raise ServeError(413, f"decompressed request body exceeds {limit} bytes")
        if not d.eof:
            raise ProtocolError(f"{encoding} request body is truncated")
        return out
    raise ProtocolError(f"request body is not valid {encoding} data")


class HttpApi:
    """Routes of one node over ``server``'s parts."""

    def __init__(self, server: InferenceServer) -> None:
        self.server = server
        self.settings = server.settings
        self.core = server.core
        self.auth = server.auth
        self.metrics = server.metrics
        self.board = server.board

    # ------------------------------------------------------------------ plumbing

    @staticmethod
    def token(request: Request, cookie: bool = False) -> str:
        token = bearer(request.headers.get("authorization"))
        if not token and cookie:
            token = request.query_params.get("token") or request.cookies.get(TOKEN_COOKIE, "")
        return token

    async def read_body(self, request: Request) -> bytes:
        """The request body: Content-Length checked first, read within ``body_timeout_s``,
        at most ``max_request_bytes`` (also after decompression)."""
        limit = self.settings.max_request_bytes
        length = request.headers.get("content-length")
        if length is not None and ascii_int(length, "Content-Length") > limit:
            raise ServeError(413, f"request body of {length} bytes exceeds {limit} bytes")
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("identity", "", *_ENCODINGS):
            raise ServeError(
                415, f"Content-Encoding {encoding[:20]!r} not supported (gzip, deflate, identity)"
            )
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.settings.body_timeout_s):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise ServeError(413, f"request body exceeds {limit} bytes")
                    chunks.append(chunk)
        except TimeoutError:
            raise ServeError(
                408, f"request body not received within {self.settings.body_timeout_s} s"
            ) from None
        except ClientDisconnect:
            raise _Disconnected from None
        body = b"".join(chunks)
        if encoding in _ENCODINGS:
            body = _inflate(body, encoding, limit)
        return body

    def model_label(self, request: Request) -> str:
        """The model label of a request: a served model's name, else "" (never the URL's)."""
        name = request.path_params.get("name", "")
        return name if self.core.served(name) else ""

    def device(self, request: Request) -> str | None:
        """The calling device: its token's, held to its certificate's name under mutual
        TLS (a device certificate names the device; another device's token is refused)."""
        return self.auth.device(self.token(request), peer_identity(request.scope))

    async def handle(self, request: Request, endpoint: str, fn: Handler) -> Response:
        try:
            resp = await fn(request)
        except ServeError as f:
            resp = _error(f.status, f.message)
        except ProtocolError as exc:
            resp = _error(400, str(exc))
        except Unauthorized as exc:
            resp = _error(401, str(exc))
        except QueueFull as exc:
            resp = _error(503, str(exc))
        except _Disconnected:
            resp = _error(DISCONNECTED, "client disconnected")
        except Exception as exc:  # a bug: answer in the protocol's shape and log it
            self.server.event("error", endpoint=endpoint, error=f"{exc.__class__.__name__}: {exc}")
            resp = _error(500, f"internal error: {exc.__class__.__name__}")
        self.metrics.request(endpoint, self.model_label(request), resp.status_code)
        if endpoint == "infer" and resp.status_code != 200:
            self.board.request(getattr(request.state, "device", None), 0.0, False, None)
        return resp

    def wrap(self, endpoint: str, fn: Handler) -> Handler:
        async def route(request: Request) -> Response:
            return await self.handle(request, endpoint, fn)

        return route

    # ------------------------------------------------------------------ server-wide

    async def server_metadata(self, request: Request) -> Response:
        self.auth.anyone(self.token(request))
        return json_response(self.server.metadata())

    async def live(self, request: Request) -> Response:
        return json_response({"live": True})

    async def ready(self, request: Request) -> Response:
        ok = self.server.is_ready()
        return json_response({"ready": ok}, 200 if ok else 503)

    async def dashboard(self, request: Request) -> Response:
        self.auth.operator(self.token(request, cookie=True))
        resp = Response(DASHBOARD_HTML, media_type="text/html")
        token = request.query_params.get("token")
        if token:  # keep it for the page's /v2/stats polls, not in the URL
            resp.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return resp

    async def prometheus(self, request: Request) -> Response:
        self.auth.operator(self.token(request))
        return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def live_stats(self, request: Request) -> Response:
        self.auth.operator(self.token(request, cookie=True))  # the dashboard polls with it
        snap = self.board.snapshot(self.core.depth)
        snap["lifecycle"] = self.server.lifecycle_summary()
        return json_response(snap)

    async def results(self, request: Request) -> Response:
        device = self.device(request)  # a device certificate submits only as itself
        body = await self.read_body(request)
        accepted, dup, assign = await self.server.ingest(device, loads_strict(body, finite=True))
        out: dict[str, Any] = {"accepted": accepted, "duplicates": dup}
        if assign:
            out["assign"] = assign
        return json_response(out)

    # ------------------------------------------------------------------ lifecycle

    async def rollout_status(self, request: Request) -> Response:
        self.auth.operator(self.token(request))
        fleet = self.server.rollouts.to_json()
        return json_response({**fleet, "drift": self.server.drift.to_json()})

    async def rollout_start(self, request: Request) -> Response:
        from pydantic import ValidationError

        from edgeintel.errors import format_error
        from edgeintel.runtime.rollout import RolloutSettings

        self.auth.operator(self.token(request))
        body = loads_strict(await self.read_body(request), finite=True)
        try:
            settings = RolloutSettings.model_validate(body)
        except ValidationError as exc:
            raise ProtocolError(f"rollout {format_error(dict(exc.errors()[0]))}") from None
        r = await self.server.start_rollout(settings)
        return json_response(r.to_json())

    async def artifact(self, request: Request) -> Response:
        """A served version's ONNX file, for a device's over-the-air update: its sha256
        and (when signed) its detached signature in headers, checked by the device."""
        self.device(request)
        m = self.core.find(request.path_params["name"], request.path_params["version"])
        from edgeintel.security.signing import signature_path

        loop = asyncio.get_running_loop()
        data = await loop.run_in_executor(None, m.path.read_bytes)
        headers = {"X-Edgeintel-Sha256": m.sha256, "X-Edgeintel-Version": m.version}
        sig = signature_path(m.path)
        if sig.is_file():
            headers["X-Edgeintel-Signature"] = sig.read_text(encoding="ascii").strip()
        return Response(data, media_type="application/octet-stream", headers=headers)

    # ------------------------------------------------------------------ per model

    async def metadata(self, request: Request) -> Response:
        self.device(request)
        m = self.core.find(request.path_params["name"], request.path_params.get("version"))
        return json_response(m.metadata(self.core.repository.versions(m.name)))

    async def model_ready(self, request: Request) -> Response:
        self.device(request)
        m = self.core.find(request.path_params["name"], request.path_params.get("version"))
        ok = self.core.ready
        return json_response({"name": m.name, "ready": ok}, 200 if ok else 503)

    async def config(self, request: Request) -> Response:
        self.device(request)
        p = request.path_params
        return json_response(self.core.config(p["name"], p.get("version")))

    async def stats(self, request: Request) -> Response:
        self.auth.anyone(self.token(request))
        p = request.path_params
        return json_response({"model_stats": self.core.statistics(p.get("name"), p.get("version"))})

    async def index(self, request: Request) -> Response:
        self.auth.anyone(self.token(request))
        body = await self.read_body(request)
        opts = loads_strict(body) if body.strip() else {}
        if not isinstance(opts, dict) or not isinstance(opts.get("ready", False), bool):
            raise ProtocolError('expected {"ready": true|false} or an empty body')
        return json_response(self.core.index(bool(opts.get("ready"))))

    async def load(self, request: Request) -> Response:
        self.auth.operator(self.token(request))
        await self.read_body(request)
        await self.core.load(request.path_params["name"])
        return json_response({})

    async def unload(self, request: Request) -> Response:
        self.auth.operator(self.token(request))
        await self.read_body(request)
        await self.core.unload(request.path_params["name"])
        return json_response({})

    async def infer(self, request: Request) -> Response:
        t0 = time.perf_counter()
        device = request.state.device = self.device(request)
        forward = request.headers.get(FORWARD_HEADER)
        if forward and forward != self.server.node:
            return await self._relay(request, forward, device, t0)
        name, version = request.path_params["name"], request.path_params.get("version")
        if version is None:  # a device under a rollout gets the version assigned to it
            version = self.server.rollouts.version_for(device, name)
        model = self.core.find(name, version)
        if not self.core.ready:
            raise ServeError(503, "server is not ready")
        ok = False
        rows = 0
        try:
            body = await self.read_body(request)
            hl = request.headers.get(HEADER_LENGTH)
            req = decode_request(
                body, ascii_int(hl, "Inference-Header-Content-Length") if hl else None
            )
            feeds = self.core.check_inputs(model, req.inputs)
            wanted = self.core.output_names(model, req.outputs)
            rows = self.core.rows(model, feeds)
            outs, tier = await self.core.infer(model, feeds)
            selected = {n: outs[n] for n in wanted}
            binary = set(selected) if req.binary_all else req.binary_outputs
            payload, header_len = encode_response(
                model.name, model.version, selected, binary, req.id
            )
            ok = True
        finally:
            elapsed = time.perf_counter() - t0
            self.core.stats.request(model.name, model.version, elapsed, ok, rows)
        self.metrics.latency.labels(model.name).observe(elapsed)
        self.board.request(device, elapsed * 1000, True, tier)
        if header_len is None:
            return Response(payload, media_type="application/json")
        return Response(
            payload,
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(header_len)},
        )

    async def _relay(
        self, request: Request, target: str, device: str | None, t0: float
    ) -> Response:
        relay = self.server.relay
        if relay is None:
            raise ServeError(404, f"this node has no upstream to relay {target!r} to")
        relay.check_target(target)
        timeout_s = parse_timeout(request.headers.get(TIMEOUT_HEADER))
        body = await self.read_body(request)
        status, payload, headers = await relay.relay(
            request.url.path, body, dict(request.headers), timeout_s
        )
        self.board.request(device, (time.perf_counter() - t0) * 1000, True, None)
        return Response(payload, status, headers=headers)

    # ------------------------------------------------------------------ app

    def routes(self) -> list[Route]:
        w = self.wrap
        bases = ("/v2/models/{name}", "/v2/models/{name}/versions/{version}")
        # infer first: Starlette tries routes in order, and infer is nearly every request
        routes = [Route(b + "/infer", w("infer", self.infer), methods=["POST"]) for b in bases]
        routes += [
            Route("/v2", w("server", self.server_metadata), methods=["GET"]),
            Route("/v2/health/live", self.live, methods=["GET"]),
            Route("/v2/health/ready", self.ready, methods=["GET"]),
            Route("/metrics", w("metrics", self.prometheus), methods=["GET"]),
            Route("/v2/stats", w("stats", self.live_stats), methods=["GET"]),
            Route("/dashboard", w("dashboard", self.dashboard), methods=["GET"]),
            Route("/v1/results", w("results", self.results), methods=["POST"]),
            Route("/v1/rollout", w("rollout", self.rollout_status), methods=["GET"]),
            Route("/v1/rollout", w("rollout", self.rollout_start), methods=["POST"]),
            Route(
                "/v1/models/{name}/versions/{version}/artifact",
                w("artifact", self.artifact),
                methods=["GET"],
            ),
            Route("/v2/models/stats", w("statistics", self.stats), methods=["GET"]),
            Route("/v2/repository/index", w("repository", self.index), methods=["POST"]),
            Route(
                "/v2/repository/models/{name}/load", w("repository", self.load), methods=["POST"]
            ),
            Route(
                "/v2/repository/models/{name}/unload",
                w("repository", self.unload),
                methods=["POST"],
            ),
        ]
        for base in bases:
            routes += [
                Route(base, w("metadata", self.metadata), methods=["GET"]),
                Route(base + "/ready", w("ready", self.model_ready), methods=["GET"]),
                Route(base + "/config", w("config", self.config), methods=["GET"]),
                Route(base + "/stats", w("statistics", self.stats), methods=["GET"]),
            ]
        return routes

    def app(self) -> Starlette:
        async def on_http_error(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, HTTPException)
            return _error(exc.status_code, str(exc.detail))

        app = Starlette(
            routes=self.routes(),
            lifespan=self.server.lifespan,
            exception_handlers={HTTPException: on_http_error},
        )
        app.state.server = self.server
        app.state.metrics = self.metrics
        app.state.live = self.board
        app.state.batchers = self.core.batchers
        return app
