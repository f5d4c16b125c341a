"""What a serving node does with a decoded request, whatever protocol carried it.

``InferenceCore`` holds the served models, one ``DynamicBatcher`` per model version,
the result cache in front of them and the per-model statistics; the HTTP app
(``runtime.http_api``) and the gRPC service (``runtime.grpc_api``) both call it, so
batching, caching and accounting are the same on both. Failures are ``ServeError``
with the HTTP status they are answered with (gRPC maps it to a status code).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from edgeintel.errors import EdgeIntelError
from edgeintel.runtime.batching import DynamicBatcher, QueueFull
from edgeintel.runtime.dashboard import LiveStats
from edgeintel.runtime.metrics import ServerMetrics
from edgeintel.runtime.protocol import InferInput, ProtocolError
from edgeintel.runtime.repository import LoadedModel, ModelRepository
from edgeintel.runtime.seams import NoCache, ResultCache, tensor_key
from edgeintel.runtime.settings import ServerSettings
from edgeintel.runtime.statistics import StatsBook

__all__ = ["CacheFactory", "Features", "InferenceCore", "ServeError", "model_config"]

CacheFactory = Callable[[str, str], ResultCache]
Features = Callable[[dict[str, np.ndarray]], np.ndarray | None]


class ServeError(EdgeIntelError):
    """A request answered with ``status`` (an HTTP status) and ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _approx_hits(cache: Any) -> int:
    """The cache's approximate-tier hits so far (0 when it keeps no ``stats``)."""
    return int(getattr(getattr(cache, "stats", None), "approx_hits", 0))


def _triton_type(datatype: str) -> str:
    return "TYPE_" + ("STRING" if datatype == "BYTES" else datatype)


def model_config(model: LoadedModel, settings: ServerSettings) -> dict[str, Any]:
    """Triton's model configuration (``GET /v2/models/{m}/config``) of a loaded model:
    dims without the batch axis when the model batches."""
    batch = settings.batching.max_batch_size if model.batchable else 0

    def tensors(specs: list[Any]) -> list[dict[str, Any]]:
        return [
            {
                "name": t.name,
                "data_type": _triton_type(t.datatype),
                "dims": list(t.shape[1:] if batch else t.shape),
            }
            for t in specs
        ]

    cfg: dict[str, Any] = {
        "name": model.name,
        "platform": "onnxruntime_onnx",
        "backend": "onnxruntime",
        "max_batch_size": batch,
        "input": tensors(model.inputs),
        "output": tensors(model.outputs),
    }
    if batch > 1:
        cfg["dynamic_batching"] = {
            "max_queue_delay_microseconds": settings.batching.max_queue_delay_us
        }
    return cfg


class InferenceCore:
    """Models, batchers, result cache and statistics of one node.

    ``cache``: one result cache for every model, or a factory ``(model, version) ->
    cache`` (an approximate tier must not mix models); ``features(feeds)`` gives a
    request's feature vector for the approximate tier (None: exact tier only).
    """

    def __init__(
        self,
        repository: ModelRepository,
        settings: ServerSettings,
        metrics: ServerMetrics,
        board: LiveStats,
        cache: ResultCache | CacheFactory | None = None,
        features: Features | None = None,
    ) -> None:
        self.repository = repository
        self.settings = settings
        self.metrics = metrics
        self.board = board
        self.features = features
        self.stats = StatsBook()
        self.batchers: dict[tuple[str, str], DynamicBatcher] = {}
        self.ready = False
        self._caches: dict[tuple[str, str], ResultCache] = {}
        if cache is None or hasattr(cache, "get"):
            self._shared: ResultCache | None = cache or NoCache()  # type: ignore[assignment]
            self._factory: CacheFactory | None = None
            self.use_cache = bool(getattr(self._shared, "enabled", True))
        else:
            self._shared, self._factory = None, cache  # type: ignore[assignment]
            self.use_cache = True

    # ------------------------------------------------------------------ lookups

    def cache_for(self, model: str, version: str) -> ResultCache:
        if self._shared is not None:
            return self._shared
        c = self._caches.get((model, version))
        if c is None:
            assert self._factory is not None
            c = self._caches[(model, version)] = self._factory(model, version)
        return c

    def find(self, name: str, version: str | None = None) -> LoadedModel:
        """The served model version; ``ServeError(404)`` naming what is available."""
        try:
            return self.repository.get(name, version)
        except KeyError as exc:
            raise ServeError(404, str(exc.args[0])) from None

    def served(self, name: str) -> bool:
        return name in self.repository.models

    @property
    def depth(self) -> int:
        """Requests waiting in every model's queue."""
        return sum(b.depth for b in self.batchers.values())

    def batcher(self, model: LoadedModel) -> DynamicBatcher:
        key = (model.name, model.version)
        b = self.batchers.get(key)
        if b is None:
            hist = self.metrics.batch.labels(model.name)

            def on_batch(rows: int, waits: list[float], run_s: float) -> None:
                hist.observe(rows)
                self.board.batch(rows)
                self.stats.batch(model.name, model.version, rows, waits, run_s)

            b = DynamicBatcher(model, self.settings.batching, on_batch=on_batch)
            b.start()
            self.batchers[key] = b
            self.metrics.watch_queue(model.name, lambda: float(b.depth))
        return b

    # ------------------------------------------------------------------ inference

    @staticmethod
    def check_inputs(model: LoadedModel, inputs: list[InferInput]) -> dict[str, np.ndarray]:
        """Feeds for ONNX Runtime; ``ProtocolError`` naming the input that does not match
        the model (names, datatype, shape) or holds a non-finite float."""
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
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise ProtocolError(
                    f"input {i.name!r}: non-finite value (NaN, Infinity, or beyond the "
                    f"range of {i.datatype})"
                )
            if spec.datatype == "BYTES":
                arr = np.array(
                    [b.decode("utf-8", "replace") for b in arr.reshape(-1)], dtype=object
                ).reshape(shape)
            feeds[i.name] = arr
        return feeds

    async def infer(
        self, model: LoadedModel, feeds: dict[str, np.ndarray]
    ) -> tuple[dict[str, np.ndarray], str | None]:
        """Outputs of one request (result cache first, then the model's batcher) and the
        cache tier that answered it (``exact``, ``approx`` or None)."""
        if not self.ready:
            raise ServeError(503, "server is not ready")
        tier: str | None = None
        outs: dict[str, np.ndarray] | None = None
        key = vec = None
        if self.use_cache:
            t0 = time.perf_counter()
            c = self.cache_for(model.name, model.version)
            key = tensor_key(model.name, model.version, feeds)
            vec = self.features(feeds) if self.features is not None else None
            self.metrics.cache_lookups.labels(model.name).inc()
            approx_before = _approx_hits(c)
            outs = c.get(key, vec)
            if outs is not None:
                tier = "approx" if _approx_hits(c) > approx_before else "exact"
                self.metrics.cache_hits.labels(model.name, tier).inc()
            self.stats.cache(model.name, model.version, outs is not None, time.perf_counter() - t0)
        if outs is None:
            try:
                outs = await self.batcher(model).infer(feeds)
            except QueueFull:
                raise  # answered 503
            except Exception as exc:  # ONNX Runtime rejected the tensors
                raise ServeError(
                    400, f"inference failed: {exc.__class__.__name__}: {exc}"
                ) from None
            if key is not None:
                self.cache_for(model.name, model.version).put(key, outs, vec)
        return outs, tier

    @staticmethod
    def output_names(model: LoadedModel, wanted: list[str] | None) -> list[str]:
        """The outputs to answer with (all when ``wanted`` is None); 400 for an unknown one."""
        names = [o.name for o in model.outputs]
        if wanted is None:
            return names
        unknown = [o for o in wanted if o not in names]
        if unknown:
            raise ProtocolError(f"unknown output(s) {unknown}; model has {names}")
        return wanted

    @staticmethod
    def rows(model: LoadedModel, feeds: dict[str, np.ndarray]) -> int:
        """Rows of a request (its batch size; 1 for a model without a batch axis)."""
        first = next(iter(feeds.values()))
        return int(first.shape[0]) if model.batchable and first.ndim else 1

    # ------------------------------------------------------------------ extensions

    def config(self, name: str, version: str | None = None) -> dict[str, Any]:
        return model_config(self.find(name, version), self.settings)

    def statistics(self, name: str | None = None, version: str | None = None) -> list[Any]:
        """Statistics of every served version, of one model, or of one version."""
        if name:
            if version:
                m = self.find(name, version)
                keys = [(m.name, m.version)]
            else:
                self.find(name)
                keys = [(name, v) for v in self.repository.versions(name)]
        else:
            keys = [(n, v) for n in self.repository.models for v in self.repository.versions(n)]
        return self.stats.snapshot(keys)

    def index(self, ready_only: bool = False) -> list[dict[str, str]]:
        """The repository index: every model folder, served versions READY, refused ones
        UNAVAILABLE with the reason, an unloaded model UNAVAILABLE."""
        return self.repository.index(ready_only)

    async def load(self, name: str) -> None:
        """(Re)load a model from the repository folder (sha256-verified), hot: the model
        stays served while its files are checked and opened (in a worker thread), then
        its versions are swapped at once; requests in flight finish on the versions they
        started with, and batchers of versions no longer served (or whose file changed)
        close after their queues drain."""
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(None, self.repository.load_model, name)
        served = self.repository.models.get(name, {})
        for key in [k for k in self.batchers if k[0] == name]:
            now = served.get(key[1])
            if now is None or now.sha256 != self.batchers[key].model.sha256:
                await self.batchers.pop(key).close()
        if not ok:
            why = self.repository.refused.get(name) or next(
                (w for k, w in self.repository.refused.items() if k.startswith(f"{name}/")),
                "no such model folder",
            )
            raise ServeError(400, f"failed to load {name!r}: {why}")

    async def unload(self, name: str, missing_ok: bool = False) -> None:
        """Stop serving a model: its queued requests finish, new ones get 404."""
        if not self.served(name) and not missing_ok:
            raise ServeError(404, f"unknown model {name!r}")
        self.repository.unload_model(name)
        for key in [k for k in self.batchers if k[0] == name]:
            await self.batchers.pop(key).close()

    async def close(self) -> None:
        self.ready = False
        for b in list(self.batchers.values()):
            await b.close()
