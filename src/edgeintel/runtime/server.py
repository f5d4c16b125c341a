"""``edgeintel serve``: an edge or cloud node speaking the Open Inference Protocol v2.

Endpoints (KServe / Triton HTTP/REST, with the binary-data extension):

* ``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``
* ``GET /v2/models/{name}[/versions/{v}]`` metadata, ``.../ready``
* ``POST /v2/models/{name}[/versions/{v}]/infer``
* ``POST /v1/results`` (devices forward their stored results; idempotent by key)
* ``GET /metrics`` (Prometheus), ``GET /v2/stats`` (JSON) and ``GET /dashboard`` (live page)

Errors are ``{"error": "..."}`` with a 4xx status (503 when a queue is full
or the node is shutting down, 502 when a relayed request finds no upstream).
With tokens configured, model and result endpoints need ``Authorization: Bearer
<token>`` of a known device (or relaying node), and /metrics, /v2/stats and
/dashboard an operator's token (the dashboard also takes ``?token=`` once and
keeps it in a cookie); health endpoints stay open (401 otherwise). Bodies above
``max_request_bytes`` are refused with 413 before being read.

An edge server with an ``upstream`` (the cloud, over its emulated backhaul)
relays infer requests carrying ``X-Edgeintel-Forward: <upstream name>`` and
forwards the results its sink stored to the upstream's ``/v1/results``
(store-and-forward again, one hop up); bytes each way are counted per link.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from edgeintel.runtime.auth import Principal, Role, Tokens
from edgeintel.runtime.batching import DynamicBatcher, QueueFull
from edgeintel.runtime.dashboard import DASHBOARD_HTML, LiveStats
from edgeintel.runtime.protocol import (
    HEADER_LENGTH,
    ProtocolError,
    decode_request,
    encode_response,
)
from edgeintel.runtime.repository import LoadedModel, ModelRepository
from edgeintel.runtime.seams import NoCache, ResultCache, tensor_key
from edgeintel.runtime.settings import ServerSettings
from edgeintel.runtime.sink import ResultSink
from edgeintel.runtime.transport import Request as OutRequest
from edgeintel.runtime.transport import Transport, TransportError

CacheFactory = Callable[[str, str], ResultCache]
FORWARD_HEADER = "x-edgeintel-forward"
TOKEN_COOKIE = "edgeintel_token"

__all__ = ["SERVER_NAME", "build_app", "serve"]

SERVER_NAME = "edgeintel"
_EXTENSIONS = ["binary_tensor_data", "model_repository", "statistics"]
log = logging.getLogger("edgeintel.runtime.server")


def _event(event: str, **fields: Any) -> None:
    """One structured (JSON) log line."""
    log.info(json.dumps({"event": event, "t": round(time.time(), 3), **fields}, default=str))


class _Failure(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _json(obj: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(obj, separators=(",", ":")).encode(), status, media_type="application/json"
    )


def _error(status: int, message: str) -> Response:
    return _json({"error": message}, status)


class _Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "edgeintel_requests",
            "Requests by endpoint kind, model and status",
            ["endpoint", "model", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "edgeintel_infer_latency_seconds",
            "Server-side infer latency",
            ["model"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
            registry=r,
        )
        self.batch = Histogram(
            "edgeintel_batch_size",
            "Rows per ONNX Runtime call",
            ["model"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.queue = Gauge("edgeintel_queue_depth", "Requests waiting", ["model"], registry=r)
        self.cache_hits = Counter(
            "edgeintel_cache_hits", "Result cache hits by tier", ["model", "tier"], registry=r
        )
        self.cache_lookups = Counter(
            "edgeintel_cache_lookups", "Result cache lookups", ["model"], registry=r
        )
        self.link_bytes = Counter(
            "edgeintel_link_bytes",
            "Bytes over this node's upstream link by direction (up = towards the upstream)",
            ["link", "direction"],
            registry=r,
        )
        self.relayed = Counter(
            "edgeintel_relayed_requests", "Requests relayed upstream", ["status"], registry=r
        )
        self.device = Counter(
            "edgeintel_device_requests", "Requests per device", ["device"], registry=r
        )
        self.results = Counter(
            "edgeintel_results_ingested",
            "Forwarded results stored / duplicates",
            ["device", "kind"],
            registry=r,
        )


def build_app(
    repository: ModelRepository,
    settings: ServerSettings | None = None,
    tokens: dict[str, str] | Tokens | None = None,
    cache: ResultCache | CacheFactory | None = None,
    sink_path: str | Path | None = None,
    features: Callable[[dict[str, np.ndarray]], np.ndarray | None] | None = None,
    node: str | None = None,
    upstream: Transport | None = None,
    upstream_name: str | None = None,
    upstream_token: str | None = None,
) -> Starlette:
    """The ASGI app of one node.

    ``tokens``: device name -> bearer token, or a ``Tokens`` table with relaying nodes
    and operators. ``cache``: one result cache for every model, or a factory
    ``(model, version) -> cache`` (an approximate tier must not mix models);
    ``features(feeds)`` gives a request's feature vector for the approximate tier
    (None: exact tier only). ``upstream``: the transport to ``upstream_name`` (the
    cloud, usually over a ``LinkEmulator`` of the backhaul), used to relay requests
    and to forward stored results with ``upstream_token``.
    """
    settings = settings or ServerSettings()
    table = tokens if isinstance(tokens, Tokens) else Tokens(devices=dict(tokens or {}))
    if cache is None or hasattr(cache, "get"):
        shared: ResultCache = cache or NoCache()  # type: ignore[assignment]

        def cache_for(model: str, version: str) -> ResultCache:
            return shared

        use_cache = getattr(shared, "enabled", True)
    else:
        caches: dict[tuple[str, str], ResultCache] = {}
        factory: CacheFactory = cache  # type: ignore[assignment]

        def cache_for(model: str, version: str) -> ResultCache:
            c = caches.get((model, version))
            if c is None:
                c = caches[(model, version)] = factory(model, version)
            return c

        use_cache = True
    metrics = _Metrics()
    board = LiveStats()
    batchers: dict[tuple[str, str], DynamicBatcher] = {}
    state: dict[str, Any] = {"ready": False, "sink": None, "forwarder": None}

    def batcher(model: LoadedModel) -> DynamicBatcher:
        key = (model.name, model.version)
        b = batchers.get(key)
        if b is None:
            hist = metrics.batch.labels(model.name)

            def on_batch(rows: int) -> None:
                hist.observe(rows)
                board.batch(rows)

            b = DynamicBatcher(model, settings.batching, on_batch=on_batch)
            b.start()
            batchers[key] = b
            metrics.queue.labels(model.name).set_function(lambda: float(b.depth))
        return b

    def principal(request: Request, cookie: bool = False) -> Principal | None:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        if not token and cookie:
            token = request.query_params.get("token") or request.cookies.get(TOKEN_COOKIE, "")
        return table.principal(token) if token else None

    def authorize(request: Request) -> str | None:
        """The calling device (None when auth is off, or for a relaying node);
        401 without a valid device or node token."""
        if not table.enabled:
            return None
        who = principal(request)
        if who is None or who.role is Role.OPERATOR:
            raise _Failure(401, "missing or invalid bearer token")
        if who.role is Role.NODE:
            return None
        metrics.device.labels(who.name).inc()
        return who.name

    def authorize_operator(request: Request, cookie: bool = False) -> None:
        """401 unless an operator's token is presented (when auth is on)."""
        if not table.enabled:
            return
        who = principal(request, cookie)
        if who is None or who.role is not Role.OPERATOR:
            raise _Failure(401, "missing or invalid operator token")

    async def read_body(request: Request) -> bytes:
        limit = settings.max_request_bytes
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise _Failure(400, "Content-Length must be a non-negative integer")
            if int(length) > limit:
                raise _Failure(413, f"request body of {length} bytes exceeds {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _Failure(413, f"request body exceeds {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def find(request: Request) -> LoadedModel:
        name = request.path_params["name"]
        version = request.path_params.get("version")
        try:
            return repository.get(name, version)
        except KeyError as exc:
            raise _Failure(404, str(exc.args[0])) from None

    async def handle(request: Request, endpoint: str, fn: Any) -> Response:
        model = request.path_params.get("name", "")
        try:
            resp: Response = await fn(request)
        except _Failure as f:
            resp = _error(f.status, f.message)
        except ProtocolError as exc:
            resp = _error(400, str(exc))
        except QueueFull as exc:
            resp = _error(503, str(exc))
        except Exception as exc:  # a bug: answer in the protocol's shape and log it
            _event("error", endpoint=endpoint, error=f"{exc.__class__.__name__}: {exc}")
            resp = _error(500, f"internal error: {exc.__class__.__name__}")
        metrics.requests.labels(endpoint, model, str(resp.status_code)).inc()
        if endpoint == "infer" and resp.status_code != 200:
            board.request(getattr(request.state, "device", None), 0.0, False, None)
        return resp

    # ------------------------------------------------------------------ endpoints

    async def server_metadata(request: Request) -> Response:
        return _json({"name": SERVER_NAME, "version": "0.1.0", "extensions": _EXTENSIONS})

    async def live(request: Request) -> Response:
        return Response(status_code=200)

    async def ready(request: Request) -> Response:
        ok = state["ready"] and bool(repository.models)
        return Response(status_code=200 if ok else 503)

    async def _metadata(request: Request) -> Response:
        authorize(request)
        m = find(request)
        return _json(m.metadata(repository.versions(m.name)))

    async def _model_ready(request: Request) -> Response:
        authorize(request)
        find(request)
        return Response(status_code=200 if state["ready"] else 503)

    def check_inputs(model: LoadedModel, inputs: list[Any]) -> dict[str, np.ndarray]:
        specs = {t.name: t for t in model.inputs}
        given = {i.name for i in inputs}
        if given != set(specs):
            raise ProtocolError(
                f"model {model.name!r} expects inputs {sorted(specs)}, got {sorted(given)}"
            )
        feeds: dict[str, np.ndarray] = {}
        for i in inputs:
            spec = specs[i.name]
            if i.datatype != spec.datatype:
                raise ProtocolError(
                    f"input {i.name!r}: datatype {i.datatype}, model expects {spec.datatype}"
                )
            shape = i.data.shape
            if len(shape) != len(spec.shape) or any(
                d != s for d, s in zip(shape, spec.shape, strict=True) if s != -1
            ):
                raise ProtocolError(
                    f"input {i.name!r}: shape {list(shape)}, model expects {list(spec.shape)} "
                    "(-1 = any)"
                )
            if model.batchable and shape[0] == 0:
                raise ProtocolError(f"input {i.name!r}: batch of 0 rows")
            arr = i.data
            if spec.datatype == "BYTES":
                arr = np.array(
                    [b.decode("utf-8", "replace") for b in arr.reshape(-1)], dtype=object
                ).reshape(shape)
            feeds[i.name] = arr
        return feeds

    def relay_sync(request: OutRequest) -> tuple[int, bytes, dict[str, str]]:
        assert upstream is not None
        resp = upstream.send(request)
        metrics.link_bytes.labels("upstream", "up").inc(len(request.body))
        metrics.link_bytes.labels("upstream", "down").inc(len(resp.body))
        board.link("upstream", len(request.body), len(resp.body))
        return resp.status, resp.body, resp.headers

    async def _relay(request: Request, target: str) -> Response:
        if upstream is None or target != upstream_name:
            raise _Failure(
                404,
                f"this node relays to {upstream_name!r} only, not {target!r}"
                if upstream_name
                else f"this node has no upstream to relay {target!r} to",
            )
        body = await read_body(request)
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("authorization", "content-type", HEADER_LENGTH.lower())
        }
        out = OutRequest(
            "POST",
            request.url.path,
            body,
            headers,
            timeout_s=max(0.1, float(request.headers.get("x-edgeintel-timeout-s", "5"))),
        )
        try:
            status, payload, rh = await asyncio.get_running_loop().run_in_executor(
                None, relay_sync, out
            )
        except TransportError as exc:
            metrics.relayed.labels("unreachable").inc()
            board.link("upstream", 0, 0, failed=True)
            raise _Failure(502, f"upstream {target!r} unreachable: {exc}") from None
        metrics.relayed.labels(str(status)).inc()
        keep = {k: v for k, v in rh.items() if k.lower() in ("content-type", HEADER_LENGTH.lower())}
        return Response(payload, status, headers=keep)

    async def _infer(request: Request) -> Response:
        t0 = time.perf_counter()
        request.state.device = authorize(request)
        forward = request.headers.get(FORWARD_HEADER)
        if forward and forward != node:
            resp = await _relay(request, forward)
            board.request(request.state.device, (time.perf_counter() - t0) * 1000, True, None)
            return resp
        model = find(request)
        if not state["ready"]:
            raise _Failure(503, "server is not ready")
        body = await read_body(request)
        hl = request.headers.get(HEADER_LENGTH)
        if hl is not None and not hl.strip().isdigit():
            raise ProtocolError("Inference-Header-Content-Length must be a non-negative integer")
        req = decode_request(body, int(hl) if hl is not None else None)
        feeds = check_inputs(model, req.inputs)
        out_names = [o.name for o in model.outputs]
        if req.outputs is not None:
            unknown = [o for o in req.outputs if o not in out_names]
            if unknown:
                raise ProtocolError(f"unknown output(s) {unknown}; model has {out_names}")
        tier: str | None = None
        outs: dict[str, np.ndarray] | None = None
        key = vec = None
        if use_cache:
            c = cache_for(model.name, model.version)
            key = tensor_key(model.name, model.version, feeds)
            vec = features(feeds) if features is not None else None
            metrics.cache_lookups.labels(model.name).inc()
            approx_before = _approx_hits(c)
            outs = c.get(key, vec)
            if outs is not None:
                tier = "approx" if _approx_hits(c) > approx_before else "exact"
                metrics.cache_hits.labels(model.name, tier).inc()
        if outs is None:
            try:
                outs = await batcher(model).infer(feeds)
            except QueueFull:
                raise  # answered 503 by the handler
            except Exception as exc:  # ONNX Runtime rejected the tensors
                raise _Failure(400, f"inference failed: {exc.__class__.__name__}: {exc}") from None
            if key is not None:
                cache_for(model.name, model.version).put(key, outs, vec)
        wanted = req.outputs if req.outputs is not None else out_names
        selected = {n: outs[n] for n in wanted}
        binary = set(selected) if req.binary_all else req.binary_outputs
        payload, header_len = encode_response(model.name, model.version, selected, binary, req.id)
        elapsed = time.perf_counter() - t0
        metrics.latency.labels(model.name).observe(elapsed)
        board.request(request.state.device, elapsed * 1000, True, tier)
        if header_len is None:
            return Response(payload, media_type="application/json")
        return Response(
            payload,
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(header_len)},
        )

    async def _results(request: Request) -> Response:
        device = authorize(request)
        body = await read_body(request)
        try:
            msg = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise ProtocolError("request body is not valid JSON") from None
        if not isinstance(msg, dict) or not isinstance(msg.get("device"), str):
            raise ProtocolError("expected {'device': str, 'records': [...]}")
        if device is not None and msg["device"] != device:
            raise _Failure(401, f"token belongs to {device!r}, not {msg['device']!r}")
        records = msg.get("records")
        if not isinstance(records, list) or not all(
            isinstance(r, dict)
            and isinstance(r.get("key"), str)
            and isinstance(r.get("seq"), int)
            and isinstance(r.get("t_s"), int | float)
            for r in records
        ):
            raise ProtocolError("records must be objects with key (str), seq (int), t_s (number)")
        sink: ResultSink | None = state["sink"]
        if sink is None:
            raise _Failure(404, "this node does not accept forwarded results (no sink)")
        accepted, dup = await asyncio.get_running_loop().run_in_executor(
            None, sink.ingest, msg["device"], records
        )
        board.results(msg["device"], accepted, dup)
        metrics.results.labels(msg["device"], "stored").inc(accepted)
        metrics.results.labels(msg["device"], "duplicate").inc(dup)
        return _json({"accepted": accepted, "duplicates": dup})

    async def _dashboard(request: Request) -> Response:
        authorize_operator(request, cookie=True)
        resp = Response(DASHBOARD_HTML, media_type="text/html")
        token = request.query_params.get("token")
        if token:  # keep it for the page's /v2/stats polls, not in the URL
            resp.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return resp

    async def _metrics(request: Request) -> Response:
        authorize_operator(request)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def _stats(request: Request) -> Response:
        authorize_operator(request, cookie=True)  # the dashboard page polls with its cookie
        return _json(board.snapshot(sum(b.depth for b in batchers.values())))

    def wrap(endpoint: str, fn: Any) -> Any:
        async def route(request: Request) -> Response:
            return await handle(request, endpoint, fn)

        return route

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if sink_path is not None:
            state["sink"] = ResultSink(sink_path)
            if upstream is not None:
                fwd = _SinkForwarder(state["sink"], upstream, upstream_token, board, metrics)
                fwd.start()
                state["forwarder"] = fwd
        state["ready"] = True
        _event(
            "serve.ready",
            models={n: repository.versions(n) for n in repository.models},
            refused=repository.refused,
        )
        try:
            yield
        finally:
            state["ready"] = False
            for b in list(batchers.values()):
                await b.close()
            if state["forwarder"] is not None:
                state["forwarder"].stop()
            if upstream is not None:
                upstream.close()
            if state["sink"] is not None:
                state["sink"].close()
            _event("serve.stopped")

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error(exc.status_code, str(exc.detail))

    m = "/v2/models/{name}"
    mv = "/v2/models/{name}/versions/{version}"
    routes = [
        Route("/v2", server_metadata, methods=["GET"]),
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        Route("/metrics", wrap("metrics", _metrics), methods=["GET"]),
        Route("/v2/stats", wrap("stats", _stats), methods=["GET"]),
        Route("/dashboard", wrap("dashboard", _dashboard), methods=["GET"]),
        Route("/v1/results", wrap("results", _results), methods=["POST"]),
    ]
    for base in (m, mv):
        routes += [
            Route(base, wrap("metadata", _metadata), methods=["GET"]),
            Route(base + "/ready", wrap("ready", _model_ready), methods=["GET"]),
            Route(base + "/infer", wrap("infer", _infer), methods=["POST"]),
        ]
    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={HTTPException: on_http_error}
    )
    app.state.metrics = metrics
    app.state.live = board
    app.state.sink = state
    app.state.batchers = batchers
    return app


def _approx_hits(cache: Any) -> int:
    """The cache's approximate-tier hits so far (0 when it keeps no ``stats``)."""
    return int(getattr(getattr(cache, "stats", None), "approx_hits", 0))


class _SinkForwarder:
    """Forwards the sink's stored results to the upstream's ``/v1/results`` in arrival
    order, marking them forwarded only after the upstream's acknowledgement (the
    upstream's sink turns a replay into a counted duplicate). Backs off while the
    upstream link is down."""

    def __init__(
        self,
        sink: ResultSink,
        upstream: Transport,
        token: str | None,
        board: LiveStats,
        metrics: _Metrics,
        batch: int = 500,
    ) -> None:
        self.sink = sink
        self.upstream = upstream
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.board = board
        self.metrics = metrics
        self.batch = batch
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sink-forwarder", daemon=True)
        self.errors = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, drain_s: float = 2.0) -> None:
        deadline = time.monotonic() + drain_s
        while self.sink.pending_upstream() and time.monotonic() < deadline and self.errors == 0:
            time.sleep(0.05)
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            try:
                pending = self.sink.unforwarded(self.batch)
            except Exception:  # the sink closed under us at shutdown
                return
            if not pending:
                self._stop.wait(0.05)
                continue
            try:
                for device, records in pending.items():
                    body = json.dumps(
                        {"device": device, "records": records}, separators=(",", ":")
                    ).encode()
                    resp = self.upstream.send(
                        OutRequest("POST", "/v1/results", body, self.headers, timeout_s=10.0)
                    )
                    self.metrics.link_bytes.labels("upstream", "up").inc(len(body))
                    self.metrics.link_bytes.labels("upstream", "down").inc(len(resp.body))
                    self.board.link("upstream", len(body), len(resp.body))
                    if resp.status != 200:
                        raise TransportError(f"upstream answered {resp.status}")
                    self.sink.mark_forwarded(device, [r["key"] for r in records])
                    self.board.forwarded(len(records))
                backoff = 0.05
                self.errors = 0
            except TransportError:
                self.errors += 1
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 1.0)


def serve(
    repository: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: ServerSettings | None = None,
    tokens: dict[str, str] | Tokens | None = None,
    sink_path: str | Path | None = None,
    cache: ResultCache | CacheFactory | None = None,
    features: Callable[[dict[str, np.ndarray]], np.ndarray | None] | None = None,
    node: str | None = None,
    upstream: Transport | None = None,
    upstream_name: str | None = None,
    upstream_token: str | None = None,
) -> None:
    """Load the repository and run the node until SIGINT/SIGTERM (graceful: in-flight
    requests finish, for at most ``graceful_shutdown_s``). The other arguments are
    ``build_app``'s."""
    import uvicorn

    settings = settings or ServerSettings()
    repo = ModelRepository(repository, settings.intra_op_threads)
    for key, why in repo.refused.items():
        _event("model.refused", model=key, reason=why)
    app = build_app(
        repo,
        settings,
        tokens,
        cache,
        sink_path,
        features,
        node,
        upstream,
        upstream_name,
        upstream_token,
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=int(settings.graceful_shutdown_s) or None,
        backlog=2048,
    )
    uvicorn.Server(config).run()
