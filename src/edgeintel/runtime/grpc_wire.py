"""The gRPC face's connection protocol: gRPC calls over ``runtime.h2_conn``'s HTTP/2, on
the event loop that serves HTTP, written like ``runtime.http_wire``.

A request's headers name its route (``:path``; ``GrpcService``, ``runtime.grpc_server``)
and carry its metadata; its DATA is split into gRPC messages (5-byte prefix: compressed
flag, 32-bit length; compressed ones are refused with UNIMPLEMENTED, ones above
``max_message`` bytes with RESOURCE_EXHAUSTED before their bytes arrive). A unary
method's coroutine runs as a task once the request half-closes, and its answer goes out
as HEADERS, DATA and trailers (``grpc-status``, percent-encoded ``grpc-message``) in one
write with the other calls answered in that step of the loop. ``ModelStreamInfer``
answers each request message with one response message, in order. ``grpc-timeout`` is
honoured (DEADLINE_EXCEEDED), and a unary request not received within the body timeout
ends the same way.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from edgeintel.runtime.h2_conn import H2Connection, Status, Stream
from edgeintel.runtime.h2_frames import END_HEADERS, END_STREAM, HEADERS, ErrorCode, frame

__all__ = ["GrpcConnection"]

_BAD_HEADERS = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"upgrade"))
_UNITS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}


def _timeout_s(value: bytes) -> float | None:
    """A ``grpc-timeout`` (up to 8 digits and a unit) in seconds; None when malformed."""
    digits, unit = value[:-1], value[-1:]
    if not (0 < len(digits) <= 8 and digits.isdigit() and unit in _UNITS):
        return None
    return int(digits) * _UNITS[unit]


def _request_head(
    headers: Any,
) -> tuple[bytes, bytes | None, float | None, list[tuple[str, Any]]] | None:
    """(:path, content-type, grpc-timeout in s, the call's metadata) of a request's
    header list; None when it is malformed (RFC 9113 8.1.1: pseudo-headers after
    regular ones or unknown, upper-case names, connection-specific fields, no POST)."""
    method = path = ctype = None
    timeout: float | None = None
    metadata: list[tuple[str, Any]] = []
    regular = False
    for name, value in headers:
        if name[:1] == b":":
            if regular:
                return None
            if name == b":path":
                path = value
            elif name == b":method":
                method = value
            elif name not in (b":scheme", b":authority"):
                return None
            continue
        regular = True
        if name != name.lower() or name in _BAD_HEADERS:
            return None
        if name == b"content-type":
            ctype = value
        elif name == b"grpc-timeout":
            timeout = _timeout_s(value)
        elif name != b"te":
            key = name.decode("latin-1")
            if key.endswith("-bin"):  # binary metadata travels base64 (unpadded)
                try:
                    metadata.append((key, base64.b64decode(value + b"==")))
                except ValueError:
                    return None
            else:
                metadata.append((key, value.decode("latin-1")))
    if method != b"POST" or not path:
        return None
    return path, ctype, timeout, metadata


class GrpcConnection(H2Connection):
    """One HTTP/2 connection of the gRPC face (see the module docstring)."""

    def _open(self, sid: int, headers: Any, end: bool) -> None:
        head = _request_head(headers)
        if head is None:
            self._rst(sid, ErrorCode.PROTOCOL_ERROR)  # a malformed request
            return
        path, ctype, timeout, metadata = head
        if ctype is None or not ctype.startswith(b"application/grpc"):
            block = b"\x08\x03415"  # ":status: 415", literal with the static name
            self.transport.write(frame(HEADERS, END_HEADERS | END_STREAM, sid, block))
            if not end:
                self._rst(sid, ErrorCode.NO_ERROR)
            return
        svc = self.service
        route = svc.routes.get(path)
        ctx = svc.context(tuple(metadata), self.auth)
        s = Stream(sid, route or svc.unimplemented, self.peer_initial, ctx, self.loop.time())
        s.remote_closed = end
        self.streams[sid] = s
        if route is None:
            self._end(s, Status.UNIMPLEMENTED, f"Method not found: {path.decode('latin-1')}")
            return
        refused = svc.refusal(ctx)
        if refused is not None:
            self._end(s, Status.UNAUTHENTICATED, refused)
            return
        if timeout is not None:
            s.deadline = self.loop.call_later(timeout, self._deadline, s)
        if route.stream:
            self.loop.create_task(self._bidi(s))
        elif end:
            self._remote_end(s)

    def _deadline(self, s: Stream) -> None:
        s.deadline = None
        if not s.done:
            self._end(s, Status.DEADLINE_EXCEEDED, "Deadline Exceeded")

    def _take(self, s: Stream, payload: Any) -> None:
        """Add ``payload`` to ``s``'s request bytes; hand on each message completed."""
        if not s.buf and len(payload) >= 5 and payload[0] == 0:  # one whole message
            size = int.from_bytes(payload[1:5], "big")
            if size == len(payload) - 5 and size <= self.service.max_message:
                self._message(s, bytes(payload[5:]))
                return
        s.buf += payload
        self._hold(s, len(payload))
        while not s.done and len(s.buf) >= 5:
            flag, size = s.buf[0], int.from_bytes(s.buf[1:5], "big")
            if flag:
                why = "compressed" if flag == 1 else f"flag {flag}"
                self._end(s, Status.UNIMPLEMENTED, f"{why} messages are not supported")
                return
            limit = self.service.max_message
            if size > limit:
                why = f"Received message larger than max ({size} vs. {limit})"
                self._end(s, Status.RESOURCE_EXHAUSTED, why)
                return
            if len(s.buf) < 5 + size:
                return
            message = bytes(s.buf[5 : 5 + size])
            del s.buf[: 5 + size]
            self._hold(s, -5 - size)
            self._message(s, message)

    def _message(self, s: Stream, message: bytes) -> None:
        if not s.route.stream:
            if s.request is not None:
                self._end(s, Status.INVALID_ARGUMENT, "more than one request message")
            else:
                s.request = message
            return
        try:
            request = s.route.parse(message)
        except Exception:  # protobuf's DecodeError
            self._end(s, Status.INVALID_ARGUMENT, "request message is not a ModelInferRequest")
            return
        s.queue.append((request, len(message)))
        self._hold(s, len(message))
        self._wake(s)

    def _remote_end(self, s: Stream) -> None:
        """The request half-closed: a unary call's method starts."""
        s.remote_closed = True
        if s.route.stream:
            self._wake(s)
            return
        if s.done:
            return
        if s.buf or s.request is None:
            why = "incomplete request message" if s.buf else "no request message"
            self._end(s, Status.INVALID_ARGUMENT, why)
            return
        try:
            request = s.route.parse(s.request)
        except Exception:  # protobuf's DecodeError
            self._end(s, Status.INVALID_ARGUMENT, "request message does not parse")
            return
        s.request = None
        task = self.loop.create_task(s.route.method(request, s.ctx))
        task.add_done_callback(lambda t: self._answered(s, t))

    def _answered(self, s: Stream, task: asyncio.Task[Any]) -> None:
        if s.done:
            return
        code, details = self.service.outcome(task)
        if code == Status.OK:
            self._send(s, task.result())
        self._end(s, code, details)

    async def _bidi(self, s: Stream) -> None:
        """``ModelStreamInfer``: the stream's device once, then each request in order."""
        api = self.service.api
        try:
            device = await api.stream_device(s.ctx)
        except Exception as exc:
            if not s.done:
                self._end(s, *self.service.failure(exc, "stream_device"))
            return
        while not s.done:
            if not s.queue:
                if s.remote_closed:
                    self._end(s, Status.OK, "")
                    return
                s.waiter = self.loop.create_future()
                await s.waiter
                continue
            request, size = s.queue.popleft()
            self._hold(s, -size)
            try:
                response = await api.stream_one(request, device)
            except Exception as exc:
                if not s.done:
                    self._end(s, *self.service.failure(exc, "stream_infer"))
                return
            if not s.done:
                self._send(s, response)
            while s.out and not s.done:  # the peer's window is shut: read no further
                s.waiter = self.loop.create_future()
                await s.waiter
