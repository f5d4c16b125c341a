"""The Open Inference Protocol v2 over gRPC (KServe / Triton ``GRPCInferenceService``).

The handlers are coroutines on the HTTP server's event loop (the runtime's own HTTP/2
server calls them there: ``runtime.grpc_server``), so both faces share one
``InferenceServer``: the same auth (``authorization: Bearer <token>`` metadata), the
same batchers, result cache and statistics. The service definition is
the one ``tritonclient[grpc]`` ships (``tritonclient.grpc.service_pb2[_grpc]``).
Tensors arrive as ``raw_input_contents`` (little-endian bytes, BYTES length-prefixed)
or as typed ``contents``; outputs are always answered as ``raw_output_contents``.
Errors carry the gRPC status of the HTTP status the REST face answers with. Shared
memory, tracing and log settings are not implemented (UNIMPLEMENTED, not advertised);
relaying (``x-edgeintel-forward``) is HTTP only.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from edgeintel.runtime.auth import Unauthorized, bearer
from edgeintel.runtime.batching import QueueFull
from edgeintel.runtime.core import ServeError
from edgeintel.runtime.protocol import (
    InferInput,
    ProtocolError,
    from_datatype,
    read_shape,
    serialize_bytes,
    tensor_from_buffer,
    tensor_from_values,
    to_datatype,
)

if TYPE_CHECKING:
    import numpy as np

    from edgeintel.runtime.server import InferenceServer

__all__ = ["GrpcApi", "decode_infer"]

_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
}
#: the typed ``InferTensorContents`` field of each datatype (FP16 travels raw only)
_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def decode_infer(req: Any) -> list[InferInput]:
    """The inputs of a ``ModelInferRequest`` (raw contents, or typed contents)."""
    if not req.inputs:
        raise ProtocolError("'inputs' must be a non-empty list")
    raw = list(req.raw_input_contents)
    if raw and len(raw) != len(req.inputs):
        raise ProtocolError(f"{len(raw)} raw_input_contents for {len(req.inputs)} inputs")
    out: list[InferInput] = []
    seen: set[str] = set()
    for i, t in enumerate(req.inputs):
        name = t.name
        if not name:
            raise ProtocolError(f"inputs[{i}].name must be a non-empty string")
        if name in seen:
            raise ProtocolError(f"input {name!r} given twice")
        seen.add(name)
        from_datatype(t.datatype)
        shape = read_shape(list(t.shape), name)
        if raw:
            arr = tensor_from_buffer(raw[i], t.datatype, shape, name)
        else:
            field = _CONTENTS.get(t.datatype)
            if field is None:
                raise ProtocolError(f"input {name!r}: {t.datatype} needs raw_input_contents")
            values = list(getattr(t.contents, field))
            arr = tensor_from_values(values, t.datatype, shape, name)
        out.append(InferInput(name=name, datatype=t.datatype, data=arr))
    return out


def _raw(arr: np.ndarray) -> bytes:
    if arr.dtype.kind in "OSU":
        return serialize_bytes(arr)
    return arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()


class GrpcApi(pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """The ``GRPCInferenceService`` methods over ``server``'s parts."""

    def __init__(self, server: InferenceServer) -> None:
        self.server = server
        self.core = server.core
        self.auth = server.auth

    @staticmethod
    def token(context: Any) -> str:
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                return bearer(value)
        return ""

    def device(self, context: Any) -> str | None:
        """The calling device, as ``HttpApi.device``: a device certificate names it."""
        from edgeintel.security.mtls import grpc_peer

        return self.auth.device(self.token(context), grpc_peer(context))

    async def _call(
        self, method: str, model: str, context: Any, fn: Callable[[], Awaitable[Any]]
    ) -> Any:
        """Run ``fn``; a failure aborts the call with the matching status code."""
        status, message = 200, ""
        try:
            return await fn()
        except ServeError as exc:
            status, message = exc.status, exc.message
        except ProtocolError as exc:
            status, message = 400, str(exc)
        except Unauthorized as exc:
            status, message = 401, str(exc)
        except QueueFull as exc:
            status, message = 503, str(exc)
        except Exception as exc:  # a bug: logged, answered INTERNAL
            self.server.event("error", endpoint=f"grpc.{method}", error=repr(exc))
            status, message = 500, f"internal error: {exc.__class__.__name__}"
        finally:
            label = model if self.core.served(model) else ""
            self.server.metrics.request(f"grpc.{method}", label, status)
        await context.abort(_CODES.get(status, grpc.StatusCode.INTERNAL), message)

    # ------------------------------------------------------------------ health, metadata

    async def ServerLive(self, request: Any, context: Any) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=self.server.is_ready())

    async def ModelReady(self, request: Any, context: Any) -> Any:
        async def run() -> Any:
            self.device(context)
            try:
                self.core.find(request.name, request.version or None)
            except ServeError:
                return pb.ModelReadyResponse(ready=False)
            return pb.ModelReadyResponse(ready=self.core.ready)

        return await self._call("ready", request.name, context, run)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        async def run() -> Any:
            self.auth.anyone(self.token(context))
            return pb.ServerMetadataResponse(**self.server.metadata())

        return await self._call("server", "", context, run)

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        async def run() -> Any:
            self.device(context)
            m = self.core.find(request.name, request.version or None)
            meta = m.metadata(self.core.repository.versions(m.name))
            return json_format.ParseDict(meta, pb.ModelMetadataResponse())

        return await self._call("metadata", request.name, context, run)

    async def ModelConfig(self, request: Any, context: Any) -> Any:
        async def run() -> Any:
            self.device(context)
            cfg = self.core.config(request.name, request.version or None)
            return pb.ModelConfigResponse(config=json_format.ParseDict(cfg, mc.ModelConfig()))

        return await self._call("config", request.name, context, run)

    async def ModelStatistics(self, request: Any, context: Any) -> Any:
        async def run() -> Any:
            self.auth.anyone(self.token(context))
            stats = self.core.statistics(request.name or None, request.version or None)
            return json_format.ParseDict({"model_stats": stats}, pb.ModelStatisticsResponse())

        return await self._call("statistics", request.name, context, run)

    # ------------------------------------------------------------------ repository

    async def RepositoryIndex(self, request: Any, context: Any) -> Any:
        async def run() -> Any:
            self.auth.anyone(self.token(context))
            index = self.core.index(request.ready)
            return json_format.ParseDict({"models": index}, pb.RepositoryIndexResponse())

        return await self._call("repository", "", context, run)

    async def RepositoryModelLoad(self, request: Any, context: Any) -> Any:
        async def run() -> Any:
            self.auth.operator(self.token(context))
            await self.core.load(request.model_name)
            return pb.RepositoryModelLoadResponse()

        return await self._call("repository", request.model_name, context, run)

    async def RepositoryModelUnload(self, request: Any, context: Any) -> Any:
        async def run() -> Any:
            self.auth.operator(self.token(context))
            await self.core.unload(request.model_name)
            return pb.RepositoryModelUnloadResponse()

        return await self._call("repository", request.model_name, context, run)

    # ------------------------------------------------------------------ inference

    async def _infer(self, request: Any, device: str | None) -> Any:
        t0 = time.perf_counter()
        version = request.model_version or None
        if version is None:  # a device under a rollout gets the version assigned to it
            version = self.server.rollouts.version_for(device, request.model_name)
        model = self.core.find(request.model_name, version)
        if not self.core.ready:
            raise ServeError(503, "server is not ready")
        ok, rows, tier = False, 0, None
        try:
            feeds = self.core.check_inputs(model, decode_infer(request))
            wanted = [o.name for o in request.outputs] or None
            names = self.core.output_names(model, wanted)
            rows = self.core.rows(model, feeds)
            outs, tier = await self.core.infer(model, feeds)
            resp = pb.ModelInferResponse(
                model_name=model.name, model_version=model.version, id=request.id
            )
            for n in names:
                arr = outs[n]
                resp.outputs.add(name=n, datatype=to_datatype(arr.dtype), shape=list(arr.shape))
                resp.raw_output_contents.append(_raw(arr))
            ok = True
        finally:
            elapsed = time.perf_counter() - t0
            self.core.stats.request(model.name, model.version, elapsed, ok, rows)
        self.server.metrics.latency.labels(model.name).observe(elapsed)
        self.server.board.request(device, elapsed * 1000, True, tier)
        return resp

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        async def run() -> Any:
            return await self._infer(request, self.device(context))

        return await self._call("infer", request.model_name, context, run)

    async def stream_device(self, context: Any) -> str | None:
        """The device of a stream (once, as it opens); UNAUTHENTICATED otherwise."""
        try:
            return self.device(context)
        except Unauthorized as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
            raise

    async def stream_one(self, request: Any, device: str | None) -> Any:
        """One request of a stream, answered in order; a failed one with
        ``error_message`` (the stream goes on), as Triton's decoupled-free models do."""
        status = 200
        try:
            resp = pb.ModelStreamInferResponse(infer_response=await self._infer(request, device))
        except (ServeError, ProtocolError, QueueFull) as exc:
            status = getattr(exc, "status", 503 if isinstance(exc, QueueFull) else 400)
            resp = pb.ModelStreamInferResponse(error_message=str(exc))
        label = request.model_name if self.core.served(request.model_name) else ""
        self.server.metrics.request("grpc.stream_infer", label, status)
        return resp
