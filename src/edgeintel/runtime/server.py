"""``edgeintel serve``: an edge or cloud node speaking the Open Inference Protocol v2.

Endpoints (KServe / Triton HTTP/REST, with the binary-data extension):

* ``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``
* ``GET /v2/models/{name}[/versions/{v}]`` metadata, ``.../ready``
* ``POST /v2/models/{name}[/versions/{v}]/infer``
* ``POST /v1/results`` (devices forward their stored results; idempotent by key)
* ``GET /metrics`` (Prometheus), ``GET /v2/stats`` (JSON) and ``GET /dashboard`` (live page)

Errors are ``{"error": "..."}`` with a 4xx status (503 when a queue is full
or the node is shutting down). With tokens configured, model and result
endpoints need ``Authorization: Bearer <token>`` of a known device (401).
Bodies above ``max_request_bytes`` are refused with 413 before being read.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
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
            "edgeintel_cache_hits", "Result cache hits", ["model"], registry=r
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
    tokens: dict[str, str] | None = None,
    cache: ResultCache | None = None,
    sink_path: str | Path | None = None,
) -> Starlette:
    """The ASGI app of one node. ``tokens`` maps device name -> bearer token."""
    settings = settings or ServerSettings()
    cache = cache or NoCache()
    use_cache = getattr(cache, "enabled", True)
    token_to_device = {t: d for d, t in (tokens or {}).items()}
    metrics = _Metrics()
    board = LiveStats()
    batchers: dict[tuple[str, str], DynamicBatcher] = {}
    state: dict[str, Any] = {"ready": False, "sink": None}

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

    def authorize(request: Request) -> str | None:
        """The calling device (None when auth is off); 401 without a valid token."""
        if not token_to_device:
            return None
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token:
            for known, device in token_to_device.items():
                if hmac.compare_digest(known.encode(), token.strip().encode()):
                    metrics.device.labels(device).inc()
                    return device
        raise _Failure(401, "missing or invalid bearer token")

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
            board.request(getattr(request.state, "device", None), 0.0, False, False)
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

    async def _infer(request: Request) -> Response:
        t0 = time.perf_counter()
        request.state.device = authorize(request)
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
        key = tensor_key(model.name, model.version, feeds) if use_cache else None
        outs = cache.get(key) if key is not None else None
        hit = outs is not None
        if outs is not None:
            metrics.cache_hits.labels(model.name).inc()
        else:
            try:
                outs = await batcher(model).infer(feeds)
            except QueueFull:
                raise  # answered 503 by the handler
            except Exception as exc:  # ONNX Runtime rejected the tensors
                raise _Failure(400, f"inference failed: {exc.__class__.__name__}: {exc}") from None
            if key is not None:
                cache.put(key, outs)
        wanted = req.outputs if req.outputs is not None else out_names
        selected = {n: outs[n] for n in wanted}
        binary = set(selected) if req.binary_all else req.binary_outputs
        payload, header_len = encode_response(model.name, model.version, selected, binary, req.id)
        elapsed = time.perf_counter() - t0
        metrics.latency.labels(model.name).observe(elapsed)
        board.request(request.state.device, elapsed * 1000, True, hit)
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

    async def stats(request: Request) -> Response:
        return _json(board.snapshot(sum(b.depth for b in batchers.values())))

    async def dashboard(request: Request) -> Response:
        return Response(DASHBOARD_HTML, media_type="text/html")

    async def metrics_endpoint(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def wrap(endpoint: str, fn: Any) -> Any:
        async def route(request: Request) -> Response:
            return await handle(request, endpoint, fn)

        return route

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if sink_path is not None:
            state["sink"] = ResultSink(sink_path)
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
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/v2/stats", stats, methods=["GET"]),
        Route("/dashboard", dashboard, methods=["GET"]),
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


def serve(
    repository: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: ServerSettings | None = None,
    tokens: dict[str, str] | None = None,
    sink_path: str | Path | None = None,
) -> None:
    """Load the repository and run the node until SIGINT/SIGTERM (graceful: in-flight
    requests finish, for at most ``graceful_shutdown_s``)."""
    import uvicorn

    settings = settings or ServerSettings()
    repo = ModelRepository(repository, settings.intra_op_threads)
    for key, why in repo.refused.items():
        _event("model.refused", model=key, reason=why)
    app = build_app(repo, settings, tokens, sink_path=sink_path)
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
