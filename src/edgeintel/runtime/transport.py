"""The device <-> edge <-> cloud transport: one small interface, swappable.

``Transport.send(request) -> response`` is all a device agent or a forwarding
server needs (the seam httpx has in ``handle_request``). ``HttpTransport`` goes
over real sockets; ``MemoryTransport`` calls an ASGI app (our server) or a
plain handler in-process, so tests run without sockets. ``LinkEmulator`` wraps
either and applies a scenario link: transfer time from bandwidth and bytes,
RTT, loss and outages from the link's trace (bandwidth 0 = outage), on an
injectable clock and sleep so unit tests need no wall-clock waits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from edgeintel.errors import LinkDown, TransportError
from edgeintel.topology import LinkSpec

__all__ = [
    "HttpTransport",
    "LinkDown",
    "LinkEmulator",
    "LinkStats",
    "MemoryTransport",
    "PathLink",
    "Request",
    "Response",
    "Transport",
    "TransportError",
]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 5.0


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class Transport(Protocol):
    def send(self, request: Request) -> Response: ...

    def close(self) -> None: ...


class HttpTransport:
    """Real HTTP/1.1 to ``base_url`` over a pooled httpx client; with ``tls`` (a
    ``security.pki.TlsFiles``) over mutual TLS: https, presenting its certificate and
    verifying the server's against the CA."""

    def __init__(self, base_url: str, max_connections: int = 16, tls: Any = None) -> None:
        import httpx

        self._httpx = httpx
        if "://" not in base_url:
            base_url = ("https://" if tls is not None else "http://") + base_url
        self._client = httpx.Client(
            base_url=base_url,
            limits=httpx.Limits(max_connections=max_connections),
            timeout=5.0,
            verify=True if tls is None else tls.client_context(),
        )

    def send(self, request: Request) -> Response:
        try:
            r = self._client.request(
                request.method,
                request.path,
                content=request.body or None,
                headers=request.headers,
                timeout=request.timeout_s,
            )
        except self._httpx.TimeoutException as exc:
            raise TransportError(f"timeout after {request.timeout_s} s: {exc}") from None
        except self._httpx.TransportError as exc:
            raise TransportError(f"{exc.__class__.__name__}: {exc}") from None
        return Response(r.status_code, r.content, dict(r.headers))

    def close(self) -> None:
        self._client.close()


class MemoryTransport:
    """In-process transport: to an ASGI app (lifespan run once) or a ``handler`` function."""

    def __init__(
        self, app: Any = None, handler: Callable[[Request], Response] | None = None
    ) -> None:
        if (app is None) == (handler is None):
            raise ValueError("give exactly one of an ASGI 'app' or a 'handler'")
        self._handler = handler
        self._client: Any = None
        if app is not None:
            from starlette.testclient import TestClient

            self._client = TestClient(app, raise_server_exceptions=True)
            self._client.__enter__()
        self._lock = threading.Lock()

    def send(self, request: Request) -> Response:
        if self._handler is not None:
            return self._handler(request)
        with self._lock:
            r = self._client.request(
                request.method,
                request.path,
                content=request.body or None,
                headers=request.headers,
            )
        return Response(r.status_code, r.content, dict(r.headers))

    def close(self) -> None:
        if self._client is not None:
            self._client.__exit__(None, None, None)
            self._client = None


class LinkLike(Protocol):
    def at(self, t_s: float) -> tuple[float, float, float]: ...


@dataclass(frozen=True)
class PathLink:
    """Several links in a row seen as one (an edge server's backhaul to the cloud through
    a macro station): the bottleneck bandwidth, RTTs summed, losses combined, at ``t_s``
    of each link's trace; an outage on any hop is an outage of the path."""

    hops: tuple[LinkSpec, ...]

    def at(self, t_s: float) -> tuple[float, float, float]:
        states = [h.at(t_s) for h in self.hops]
        if not states:
            return float("inf"), 0.0, 0.0
        keep = float(np.prod([1 - loss for _, _, loss in states]))
        return min(bw for bw, _, _ in states), sum(r for _, r, _ in states), 1 - keep


@dataclass
class LinkStats:
    """What crossed an emulated link: bytes each way, emulated delay, failures."""

    requests: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    delay_s: float = 0.0
    lost: int = 0
    outages: int = 0
    # per endpoint kind ("infer", "results", "other"): [requests, bytes up, bytes down]
    by_endpoint: dict[str, list[int]] = field(default_factory=dict)


def _endpoint_kind(path: str) -> str:
    """``infer`` (model requests), ``results`` (forwarded results) or ``other``."""
    if path.endswith("/infer"):
        return "infer"
    return "results" if path.startswith("/v1/results") else "other"


class LinkEmulator:
    """Shape ``inner``'s traffic like ``link``: for a request of ``u`` bytes and a response
    of ``d`` bytes at bandwidth ``B`` Mbit/s and round trip ``R`` ms, the exchange takes
    ``R/1000 + 8 (u + d) / (B 1e6)`` seconds on top of the server's time. With
    probability ``loss`` the exchange is lost (the sender waits its timeout and gets a
    ``TransportError``); in an outage it fails at once with ``LinkDown``.

    The link's time is ``(clock() - start) * time_scale`` seconds, so the scenario's
    trace (congestion at 60 s, outage at 120 s, ...) plays out during a run (faster with
    ``time_scale`` > 1). ``link`` is a ``LinkSpec`` or a ``PathLink`` of several hops.
    """

    def __init__(
        self,
        inner: Transport,
        link: LinkSpec | LinkLike,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        start: float | None = None,
        time_scale: float = 1.0,
    ) -> None:
        self.inner = inner
        self.link = link
        self._rng = np.random.default_rng(seed)
        self._clock = clock
        self._sleep = sleep
        self.start = clock() if start is None else start
        self.time_scale = time_scale
        self.stats = LinkStats()
        self._lock = threading.Lock()

    def trace_time(self) -> float:
        """Seconds of the link's trace that have played out."""
        return (self._clock() - self.start) * self.time_scale

    def state(self) -> tuple[float, float, float]:
        """(bandwidth Mbit/s, RTT ms, loss) in force now."""
        return self.link.at(self.trace_time())

    def send(self, request: Request) -> Response:
        bw, rtt_ms, loss = self.state()
        with self._lock:
            self.stats.requests += 1
            lost = bool(self._rng.random() < loss)
        if bw <= 0:
            with self._lock:
                self.stats.outages += 1
            raise LinkDown(f"link outage at trace time {self.trace_time():.1f} s")
        up = rtt_ms / 2000 + 8 * len(request.body) / (bw * 1e6)
        if lost:
            with self._lock:
                self.stats.lost += 1
            self._sleep(min(request.timeout_s, max(up, 0.0)))
            raise TransportError("request lost on the emulated link")
        if up >= request.timeout_s:
            self._sleep(request.timeout_s)
            raise TransportError(f"timeout after {request.timeout_s} s on the emulated link")
        self._sleep(up)
        t0 = self._clock()
        resp = self.inner.send(request)
        spent = up + (self._clock() - t0)
        down = rtt_ms / 2000 + 8 * len(resp.body) / (bw * 1e6)
        if spent + down >= request.timeout_s:
            self._sleep(max(request.timeout_s - spent, 0.0))
            raise TransportError(f"timeout after {request.timeout_s} s on the emulated link")
        self._sleep(down)
        with self._lock:
            self.stats.bytes_up += len(request.body)
            self.stats.bytes_down += len(resp.body)
            self.stats.delay_s += up + down
            row = self.stats.by_endpoint.setdefault(_endpoint_kind(request.path), [0, 0, 0])
            row[0] += 1
            row[1] += len(request.body)
            row[2] += len(resp.body)
        return resp

    def close(self) -> None:
        self.inner.close()
