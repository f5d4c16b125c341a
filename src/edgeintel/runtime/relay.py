"""An edge server's link to its upstream (the cloud): relayed requests and forwarded results.

``Relay`` sends an infer request that names the upstream in ``X-Edgeintel-Forward`` on,
over the node's upstream transport (usually a ``LinkEmulator`` of the backhaul), and
counts the bytes each way. ``SinkForwarder`` sends the results the node's sink stored to
the upstream's ``/v1/results`` (store-and-forward again, one hop up).
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time

from edgeintel.runtime.core import ServeError
from edgeintel.runtime.dashboard import LiveStats
from edgeintel.runtime.metrics import ServerMetrics
from edgeintel.runtime.protocol import HEADER_LENGTH
from edgeintel.runtime.sink import ResultSink
from edgeintel.runtime.transport import Request as OutRequest
from edgeintel.runtime.transport import Transport, TransportError

__all__ = [
    "FORWARD_HEADER",
    "MAX_TIMEOUT_S",
    "TIMEOUT_HEADER",
    "Relay",
    "SinkForwarder",
    "parse_timeout",
]

FORWARD_HEADER = "x-edgeintel-forward"
TIMEOUT_HEADER = "x-edgeintel-timeout-s"
MAX_TIMEOUT_S = 60.0
_PASS_HEADERS = ("authorization", "content-type", HEADER_LENGTH)


def parse_timeout(raw: str | None, default_s: float = 5.0) -> float:
    """A relayed request's timeout (s) from its ``X-Edgeintel-Timeout-S`` header, clamped
    to [0.1, ``MAX_TIMEOUT_S``]; ``ServeError(400)`` unless it is a finite number."""
    if raw is None:
        return default_s
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ServeError(
            400, f"X-Edgeintel-Timeout-S must be a finite number of seconds, got {raw!r}"
        )
    return min(max(0.1, value), MAX_TIMEOUT_S)


class Relay:
    """Relays requests to ``name`` over ``upstream``."""

    def __init__(
        self, upstream: Transport, name: str | None, metrics: ServerMetrics, board: LiveStats
    ) -> None:
        self.upstream = upstream
        self.name = name
        self.metrics = metrics
        self.board = board

    def check_target(self, target: str) -> None:
        """404 unless ``target`` is this node's upstream."""
        if target != self.name:
            raise ServeError(
                404,
                f"this node relays to {self.name!r} only, not {target!r}"
                if self.name
                else f"this node has no upstream to relay {target!r} to",
            )

    def _send(self, request: OutRequest) -> tuple[int, bytes, dict[str, str]]:
        resp = self.upstream.send(request)
        self.metrics.link(len(request.body), len(resp.body))
        self.board.link("upstream", len(request.body), len(resp.body))
        return resp.status, resp.body, resp.headers

    async def relay(
        self, path: str, body: bytes, headers: dict[str, str], timeout_s: float
    ) -> tuple[int, bytes, dict[str, str]]:
        """(status, body, headers to pass back) of the upstream's answer; 502 when the
        upstream is unreachable."""
        keep = {k: v for k, v in headers.items() if k.lower() in _PASS_HEADERS}
        out = OutRequest("POST", path, body, keep, timeout_s=timeout_s)
        try:
            status, payload, rh = await asyncio.get_running_loop().run_in_executor(
                None, self._send, out
            )
        except TransportError as exc:
            self.metrics.relay_status(None)
            self.board.link("upstream", 0, 0, failed=True)
            raise ServeError(502, f"upstream {self.name!r} unreachable: {exc}") from None
        self.metrics.relay_status(status)
        back = {k: v for k, v in rh.items() if k.lower() in ("content-type", HEADER_LENGTH)}
        return status, payload, back

    def close(self) -> None:
        self.upstream.close()


class SinkForwarder:
    """Forwards the sink's stored results to the upstream's ``/v1/results``, alarms
    (``urgent``) of every device first, then the rest in arrival order, marking them
    forwarded only after the upstream's acknowledgement (the upstream's sink turns a replay
    into a counted duplicate). Backs off while the upstream link is down."""

    def __init__(
        self,
        sink: ResultSink,
        upstream: Transport,
        token: str | None,
        board: LiveStats,
        metrics: ServerMetrics,
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
            # alarms of every device first (one message per device: /v1/results is per
            # device), then each device's ordinary backlog
            sends = [(d, [r for r in rs if r.get("urgent")]) for d, rs in pending.items()]
            sends += [(d, [r for r in rs if not r.get("urgent")]) for d, rs in pending.items()]
            try:
                for device, records in ((d, rs) for d, rs in sends if rs):
                    body = json.dumps(
                        {"device": device, "records": records}, separators=(",", ":")
                    ).encode()
                    resp = self.upstream.send(
                        OutRequest("POST", "/v1/results", body, self.headers, timeout_s=10.0)
                    )
                    self.metrics.link(len(body), len(resp.body))
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
