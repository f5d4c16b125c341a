"""The execution layer of parameter sweeps: any top-level (picklable) function over
picklable items, in this process, in a ``ProcessPoolExecutor`` of ``spawn``ed workers
(native thread pools pinned to one thread each, so ``N`` workers use ``N`` cores), or as
Ray tasks on a cluster (the optional ``ray`` extra). Results come back in item order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, TypeVar

from edgeintel.errors import ConfigError, EdgeIntelError

__all__ = ["THREAD_ENV", "ProgressFn", "run_parallel"]

T = TypeVar("T")
R = TypeVar("R")

THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
}
"""Environment of every sweep worker: native thread pools of one thread each."""

ProgressFn = Callable[[int, int], None]
"""``progress(done, total)`` after each finished point."""


def _pin_threads() -> None:
    """Worker initializer: one thread per native pool (env for libraries loaded later)."""
    os.environ.update(THREAD_ENV)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover - threadpoolctl is a core dependency
        pass
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def run_parallel(
    fn: Callable[[T], R],
    items: Sequence[T],
    workers: int | None = None,
    ray_address: str | None = None,
    progress: ProgressFn | None = None,
) -> list[R]:
    """``[fn(item) for item in items]`` in parallel; results in the order of ``items``.

    ``fn`` must be a module-level function (pickled by reference). ``workers``: processes
    on this machine (None: the CPU count; 1: in this process). With ``ray_address``
    the items run as Ray tasks instead (``workers`` is then ignored).
    """
    items = list(items)
    if workers is not None and (isinstance(workers, bool) or workers < 1):
        raise ConfigError(f"--workers: expected an integer >= 1, got {workers}")
    if ray_address is not None:
        return _run_ray(fn, items, ray_address, progress)
    n = workers or os.cpu_count() or 1
    if n == 1 or len(items) <= 1:
        out = []
        for i, item in enumerate(items):
            out.append(fn(item))
            if progress is not None:
                progress(i + 1, len(items))
        return out
    import multiprocessing as mp

    results: list[Any] = [None] * len(items)
    saved = {k: os.environ.get(k) for k in THREAD_ENV}
    os.environ.update(THREAD_ENV)  # spawned workers read it before importing numpy
    try:
        with ProcessPoolExecutor(
            max_workers=min(n, len(items)),
            mp_context=mp.get_context("spawn"),
            initializer=_pin_threads,
        ) as pool:
            futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
            pending = set(futures)
            done_count = 0
            try:
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in done:
                        results[futures[f]] = f.result()
                        done_count += 1
                        if progress is not None:
                            progress(done_count, len(items))
            except BaseException:
                for f in pending:
                    f.cancel()
                raise
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return results


def _package_root() -> str:
    import edgeintel

    return str(Path(edgeintel.__file__).resolve().parent)


def _run_ray(
    fn: Callable[[T], R], items: list[T], address: str, progress: ProgressFn | None
) -> list[R]:
    """Items as Ray tasks (one CPU each) on the cluster at ``address``.

    The edgeintel package of this process is shipped with the job (``py_modules``), so
    the cluster's nodes run the same code as the caller; the workers get ``THREAD_ENV``.
    ``local`` starts a private single-node cluster for the call and stops it after. A
    connection this process already holds (``ray.init`` by the caller) is used as it is.
    """
    from edgeintel.extras import require

    if not address or address.strip() != address:
        raise ConfigError(f"--ray-address: expected auto, local or host:port, got {address!r}")
    ray = require("ray", "a sweep on a Ray cluster")
    started_here = not ray.is_initialized()
    if started_here and address not in ("auto", "local"):
        _check_reachable(address)
    runtime_env = {"py_modules": [_package_root()], "env_vars": dict(THREAD_ENV)}
    if started_here:
        try:
            kwargs: dict[str, Any] = {
                "address": address,
                "runtime_env": runtime_env,
                "log_to_driver": False,
                "logging_level": "ERROR",
            }
            if address == "local":
                kwargs["include_dashboard"] = False
            ray.init(**kwargs)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise EdgeIntelError(
                f"--ray-address {address}: cannot connect to a Ray cluster "
                f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
            ) from None
    try:
        remote = ray.remote(num_cpus=1)(fn)
        refs = [remote.remote(item) for item in items]
        index = {ref: i for i, ref in enumerate(refs)}
        results: list[Any] = [None] * len(items)
        pending = list(refs)
        done_count = 0
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                results[index[ref]] = ray.get(ref)
                done_count += 1
                if progress is not None:
                    progress(done_count, len(items))
        return results
    finally:
        if started_here:
            ray.shutdown()


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """A ``host:port`` that accepts a TCP connection (Ray itself retries an unreachable
    address for minutes before it gives up)."""
    import socket

    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"--ray-address: expected auto, local or host:port, got {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise EdgeIntelError(
            f"--ray-address {address}: no Ray cluster answers there ({exc.strerror or exc}); "
            "start one with: ray start --head"
        ) from None
