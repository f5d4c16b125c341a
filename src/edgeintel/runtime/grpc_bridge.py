"""The gRPC face's server: grpcio's thread-pool server bridged to the HTTP event loop.

``GrpcApi``'s handlers are coroutines on the event loop that serves HTTP, so both
faces share one batcher, cache and set of statistics. grpcio's asyncio server ran them
there directly, but its per-call machinery (completion events handed from its poller
thread to the loop, several per call) cost more server CPU than our whole HTTP request
path (docs/runtime.md). Here grpcio's C core and its thread-pool server receive and
send; each call's thread hands the handler to the loop (``_Bridge.run``) and waits
for its answer, so the loop runs only our code and the batcher.

grpcio's threads (its C core's, the server's and the pool's) are kept on one CPU, the
one the loop ran on when the port opened (``ServerSettings.grpc_one_cpu``; Linux): they
hand each call between them and the loop several times, and spread over cores those
hand-offs became a GIL convoy under load (about 40 context switches and 1 ms of CPU
per call instead of 8 and 0.25 ms, docs/runtime.md). The loop and the batchers' threads
keep every CPU.

``SyncContext`` gives handlers the context they expect (``abort`` awaited; it ends the
call with that status from the call's own thread). A revoked client certificate is
refused before the handler runs (``security.mtls.grpc_refusal``).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any

import grpc
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from edgeintel.runtime.grpc_api import GrpcApi

if TYPE_CHECKING:
    from edgeintel.runtime.server import InferenceServer

__all__ = ["MAX_CALLS", "SyncContext", "current_cpu", "start_grpc", "stop_grpc"]

#: calls served at once (each holds a pool thread while its batch runs); more wait for
#: a thread (grpcio queues them), so this bounds in-flight gRPC calls, not connections
MAX_CALLS = 128


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code, self.details = code, details


class SyncContext:
    """A sync ``grpc.ServicerContext`` as ``GrpcApi``'s coroutines use it: ``await
    abort(code, details)`` ends the call (from its own thread, once the coroutine has
    returned); metadata and the peer's certificate are read from the call."""

    __slots__ = ("context",)

    def __init__(self, context: grpc.ServicerContext) -> None:
        self.context = context

    def invocation_metadata(self) -> Any:
        return self.context.invocation_metadata()

    def auth_context(self) -> Any:
        return self.context.auth_context()

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise _Abort(code, details)


class _Bridge:
    """The sync handlers grpcio's server calls, each running ``api``'s coroutine on
    ``loop`` and waiting for it in the call's thread."""

    def __init__(self, api: GrpcApi, loop: asyncio.AbstractEventLoop, revocations: Any) -> None:
        self.api, self.loop, self.revocations = api, loop, revocations

    def _admit(self, context: grpc.ServicerContext) -> None:
        if self.revocations is not None:
            from edgeintel.security.mtls import grpc_refusal

            why = grpc_refusal(context, self.revocations)
            if why is not None:
                context.abort(grpc.StatusCode.UNAUTHENTICATED, why)

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coro`` on the loop and wait for its result (or exception) in this
        thread: a task whose end releases a lock, lighter on the loop's thread than
        ``run_coroutine_threadsafe``'s chained futures and condition variable (server
        CPU per call 0.275 vs 0.292 ms, lower in 7 of 8 interleaved rounds)."""
        done = threading.Lock()
        done.acquire()
        tasks: list[asyncio.Task[Any]] = []

        def finished(task: asyncio.Task[Any]) -> None:
            tasks.append(task)
            done.release()

        def start() -> None:
            self.loop.create_task(coro).add_done_callback(finished)

        self.loop.call_soon_threadsafe(start)
        done.acquire()
        return tasks[0].result()

    def unary(self, name: str) -> Callable[[Any, grpc.ServicerContext], Any]:
        method = getattr(self.api, name)

        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            self._admit(context)
            try:
                return self.run(method(request, SyncContext(context)))
            except _Abort as exc:
                context.abort(exc.code, exc.details)

        return handle

    def stream(self, request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Any:
        """``ModelStreamInfer``: each request answered in order, on the loop."""
        self._admit(context)
        try:
            device = self.run(self.api.stream_device(SyncContext(context)))
        except _Abort as exc:
            context.abort(exc.code, exc.details)
        for request in request_iterator:
            yield self.run(self.api.stream_one(request, device))


def _servicer(bridge: _Bridge) -> pb_grpc.GRPCInferenceServiceServicer:
    """A servicer for grpcio's own registration whose every method is bridged; those
    ``GrpcApi`` does not implement keep the generated UNIMPLEMENTED answer."""
    servicer = pb_grpc.GRPCInferenceServiceServicer()
    for name in dir(pb_grpc.GRPCInferenceServiceServicer):
        if not name[:1].isupper():
            continue
        if name == "ModelStreamInfer":
            setattr(servicer, name, bridge.stream)
        elif inspect.iscoroutinefunction(getattr(bridge.api, name)):
            setattr(servicer, name, bridge.unary(name))
    return servicer


def current_cpu() -> int | None:
    """The CPU the calling thread last ran on (Linux ``/proc``); None where unknown."""
    try:
        with open("/proc/thread-self/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[36])
    except (OSError, IndexError, ValueError):
        return None


def _one_cpu() -> set[int] | None:
    """The one CPU grpcio's threads are kept on: the calling thread's, where the process
    may use several and the platform lets a thread be pinned; else None."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = os.sched_getaffinity(0)
    cpu = current_cpu()
    return {cpu} if len(cpus) > 1 and cpu in cpus else None


async def start_grpc(
    server: InferenceServer,
    host: str,
    port: int,
    credentials: Any = None,
    revocations: Any = None,
) -> tuple[Any, int]:
    """Start the gRPC service of ``server`` on ``host:port`` (0: a free port), bridged to
    the running event loop; (the grpc server, the bound port). ``revocations``: calls
    from a revoked client certificate are refused (UNAUTHENTICATED). Stop it with
    ``stop_grpc``."""
    limit = server.settings.max_request_bytes
    bridge = _Bridge(GrpcApi(server), asyncio.get_running_loop(), revocations)
    one = _one_cpu() if server.settings.grpc_one_cpu else None
    everywhere = os.sched_getaffinity(0) if one is not None else None
    if one is not None:  # threads started from here on inherit it
        os.sched_setaffinity(0, one)
    try:
        g = grpc.server(
            ThreadPoolExecutor(
                MAX_CALLS,
                thread_name_prefix="grpc",
                initializer=None if one is None else partial(os.sched_setaffinity, 0, one),
            ),
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", max(limit, 64 * 1024 * 1024)),
                ("grpc.max_concurrent_streams", server.settings.max_connections),
            ],
        )
        address = f"{host}:{port}"
        bound = (
            g.add_secure_port(address, credentials)
            if credentials is not None
            else g.add_insecure_port(address)
        )
        if bound == 0:
            raise OSError(f"gRPC: cannot bind {address}")
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(_servicer(bridge), g)
        g.start()
    finally:
        if everywhere is not None:  # the loop's thread keeps every CPU
            os.sched_setaffinity(0, everywhere)
    return g, bound


async def stop_grpc(g: Any, grace_s: float) -> None:
    """Stop accepting calls and let those in flight finish (at most ``grace_s``); the
    loop keeps running meanwhile, since in-flight calls wait on it."""
    done = g.stop(grace_s)
    await asyncio.get_running_loop().run_in_executor(None, done.wait)
