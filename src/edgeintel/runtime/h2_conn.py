"""HTTP/2 (RFC 9113) as the gRPC face needs it: one connection's frames, settings, flow
control, stream bookkeeping and sends, on the event loop (``runtime.grpc_wire`` adds
the gRPC calls on top).

Read: the preface and SETTINGS (acked), PING (acked), HEADERS/CONTINUATION decoded with
``hpack``, DATA, WINDOW_UPDATE, RST_STREAM, GOAWAY; frames of unknown types ignored.
Flow control both ways: the peer may send ``STREAM_WINDOW`` bytes per stream and
``CONN_WINDOW`` per connection, replenished (WINDOW_UPDATE once half is used) while the
connection holds less than the service's ``buffer_limit`` bytes of unfinished
messages; sends respect the peer's windows and frame size (what they block waits for
its WINDOW_UPDATE). Bounds: frames of at most ``MAX_FRAME`` bytes, header lists of at
most ``MAX_HEADER_LIST`` (both advertised or default), ``max_streams`` streams at once
(advertised; more are refused with REFUSED_STREAM), ``max_connections`` and an idle
timeout. Writes go through a ``CoalescingTransport``: what every stream answered in one
step of the loop leaves as one write. A peer breaking the protocol gets GOAWAY with the
error code and the connection closes.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import TYPE_CHECKING, Any, cast

from hpack import Decoder, HPACKError, OversizedHeaderListError

from edgeintel.runtime.h2_frames import (
    ACK,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    MAX_WINDOW,
    PADDED,
    PING,
    PREFACE,
    PRIORITY,
    PRIORITY_FLAG,
    PUSH_PROMISE,
    RESPONSE_HEADERS,
    RST_STREAM,
    SETTINGS,
    TRAILERS_OK,
    WINDOW_UPDATE,
    ErrorCode,
    H2Error,
    Setting,
    frame,
    settings_payload,
    status_block,
)
from edgeintel.runtime.http_wire import CoalescingTransport

if TYPE_CHECKING:
    from edgeintel.runtime.grpc_server import GrpcService, Route

__all__ = [
    "CONN_WINDOW",
    "IDLE_TIMEOUT_S",
    "MAX_FRAME",
    "MAX_HEADER_LIST",
    "STREAM_WINDOW",
    "H2Connection",
    "Status",
    "Stream",
]

MAX_FRAME = 16_384  # the largest frame accepted (HTTP/2's default, not raised)
MAX_HEADER_LIST = 16_384  # bytes of a request's header list (decoded), advertised
STREAM_WINDOW = 1 << 20  # bytes a peer may send per stream before its WINDOW_UPDATE
CONN_WINDOW = 16 << 20  # ... and per connection
IDLE_TIMEOUT_S = 5.0  # no stream and nothing read for this long: closed (uvicorn's keep-alive)


class Status:
    """The gRPC status codes the wire itself answers with."""

    OK, CANCELLED, INVALID_ARGUMENT, DEADLINE_EXCEEDED = 0, 1, 3, 4
    RESOURCE_EXHAUSTED, UNIMPLEMENTED, INTERNAL, UNAUTHENTICATED = 8, 12, 13, 16


class Stream:
    """One call: what arrived of its request, its send window, what waits to be sent."""

    __slots__ = (
        "buf", "ctx", "deadline", "done", "headers_sent", "held", "id", "opened", "out",
        "queue", "recv_unacked", "recv_window", "remote_closed", "request", "route",
        "send_window", "trailers", "waiter",
    )  # fmt: skip

    def __init__(self, sid: int, route: Route, send_window: int, ctx: Any, now: float) -> None:
        self.id, self.route, self.ctx, self.opened = sid, route, ctx, now
        self.send_window, self.recv_window, self.recv_unacked = send_window, STREAM_WINDOW, 0
        self.buf = bytearray()  # the unfinished request message
        self.held = 0  # bytes of request messages this stream holds (buf and queue)
        self.request: bytes | None = None  # a unary call's message
        self.queue: deque[tuple[Any, int]] = deque()  # a stream's parsed requests
        self.waiter: asyncio.Future[None] | None = None
        self.out: deque[memoryview] = deque()  # DATA the peer's windows hold back
        self.trailers: bytes | None = None  # sent once ``out`` is empty
        self.headers_sent = self.remote_closed = self.done = False
        self.deadline: asyncio.TimerHandle | None = None


class H2Connection(asyncio.Protocol):
    """One HTTP/2 connection (see the module docstring); subclasses open streams
    (``_open``), take their DATA (``_take``) and see them half-close (``_remote_end``)."""

    def _open(self, sid: int, headers: Any, end: bool) -> None:
        raise NotImplementedError

    def _take(self, s: Stream, payload: Any) -> None:
        raise NotImplementedError

    def _remote_end(self, s: Stream) -> None:
        raise NotImplementedError

    def __init__(self, service: GrpcService) -> None:
        self.service = service
        self.loop = service.loop
        self.decoder = Decoder(max_header_list_size=MAX_HEADER_LIST)
        self.streams: dict[int, Stream] = {}
        self.blocked: dict[int, Stream] = {}  # streams whose DATA waits for a window
        self.rest = bytearray()  # the start of a frame not yet fully received
        self.block = bytearray()  # a header block waiting for its CONTINUATION
        self.block_sid = self.block_flags = 0
        self.preface = self.settings_seen = self.failed = self.draining = False
        self.last_sid = 0
        self.send_window, self.peer_initial, self.peer_max_frame = 65_535, 65_535, MAX_FRAME
        self.recv_window, self.recv_unacked, self.buffered = CONN_WINDOW, 0, 0
        self.reads = self.seen_reads = 0
        self.auth: dict[str, list[bytes]] = {}
        self.closed: asyncio.Future[None] = self.loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # an asyncio.Transport (uvloop's are not subclasses: no isinstance check)
        self.raw = cast(asyncio.Transport, transport)
        self.transport = CoalescingTransport(self.raw, self.loop)
        self.active_at = self.loop.time()
        svc = self.service
        svc.connections.add(self)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der is not None:  # what grpc's auth context carried: the client's certificate
            self.auth = {"x509_pem_cert": [ssl.DER_cert_to_PEM_cert(der).encode()]}
        settings = {
            Setting.MAX_CONCURRENT_STREAMS: svc.max_streams,
            Setting.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            Setting.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST,
            Setting.ENABLE_PUSH: 0,
        }
        self.transport.write(
            frame(SETTINGS, 0, 0, settings_payload(settings))
            + frame(WINDOW_UPDATE, 0, 0, (CONN_WINDOW - 65_535).to_bytes(4, "big"))
        )
        if len(svc.connections) > svc.max_connections:
            self._fail(ErrorCode.ENHANCE_YOUR_CALM, "too many connections")
            return
        self.timer = self.loop.call_later(svc.tick_s, self._tick)

    def connection_lost(self, exc: Exception | None) -> None:
        self.service.connections.discard(self)
        self.failed = True
        for s in list(self.streams.values()):
            self._drop(s)
        timer = getattr(self, "timer", None)
        if timer is not None:
            timer.cancel()
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:  # the peer reads slower than we answer: take no more
        self.raw.pause_reading()

    def resume_writing(self) -> None:
        self.raw.resume_reading()

    def eof_received(self) -> bool | None:
        return None  # close

    def _fail(self, code: int, message: str) -> None:
        """A connection error: GOAWAY(code) and close."""
        if self.failed:
            return
        self.failed = True
        debug = message.encode("utf-8", "replace")[:256]
        payload = self.last_sid.to_bytes(4, "big") + code.to_bytes(4, "big") + debug
        self.transport.write(frame(GOAWAY, 0, 0, payload))
        self.transport.close()

    def goaway(self) -> None:
        """Graceful shutdown: GOAWAY(NO_ERROR); calls in flight finish, then it closes."""
        if self.failed or self.draining:
            return
        self.draining = True
        payload = self.last_sid.to_bytes(4, "big") + ErrorCode.NO_ERROR.to_bytes(4, "big")
        self.transport.write(frame(GOAWAY, 0, 0, payload))
        if not self.streams:
            self.transport.close()

    def _tick(self) -> None:
        """Every ``tick_s``: close an idle connection (GOAWAY, NO_ERROR), end unary calls
        whose request has not arrived within the body timeout (DEADLINE_EXCEEDED)."""
        now = self.loop.time()
        if self.reads != self.seen_reads:
            self.seen_reads, self.active_at = self.reads, now
        if not self.streams and now - self.active_at >= IDLE_TIMEOUT_S:
            self.goaway()
            return
        limit = self.service.body_timeout_s
        for s in list(self.streams.values()):
            if not s.route.stream and not s.remote_closed and now - s.opened >= limit:
                why = f"request message not received within {limit:g} s"
                self._end(s, Status.DEADLINE_EXCEEDED, why)
        self.timer = self.loop.call_later(self.service.tick_s, self._tick)

    def data_received(self, data: Any) -> None:
        """Frames from ``data`` (bytes or a view of a reused buffer: what is kept is
        copied)."""
        if self.failed:
            return
        self.reads += 1
        if self.rest:
            self.rest += data
            data, self.rest = bytes(self.rest), bytearray()
        try:
            at = self._frames(data)
        except H2Error as exc:
            self._fail(exc.code, str(exc))
            return
        except Exception as exc:  # a bug: logged, the connection closed, never a traceback
            self.service.server.event("error", endpoint="grpc.wire", error=repr(exc))
            self._fail(ErrorCode.INTERNAL_ERROR, "internal error")
            return
        if at < len(data) and not self.failed:
            self.rest += data[at:]

    def _frames(self, data: Any) -> int:
        n, at = len(data), 0
        if not self.preface:
            if n < len(PREFACE):
                if data != PREFACE[:n]:
                    raise H2Error(ErrorCode.PROTOCOL_ERROR, "not an HTTP/2 connection preface")
                return 0
            if data[: len(PREFACE)] != PREFACE:
                raise H2Error(ErrorCode.PROTOCOL_ERROR, "not an HTTP/2 connection preface")
            self.preface, at = True, len(PREFACE)
        while n - at >= 9 and not self.failed:
            size = int.from_bytes(data[at : at + 3], "big")
            if size > MAX_FRAME:
                raise H2Error(ErrorCode.FRAME_SIZE_ERROR, f"frame of {size} bytes > {MAX_FRAME}")
            stop = at + 9 + size
            if stop > n:
                break
            kind, flags = data[at + 3], data[at + 4]
            sid = int.from_bytes(data[at + 5 : at + 9], "big") & MAX_WINDOW
            self._frame(kind, flags, sid, data[at + 9 : stop])
            at = stop
        return at

    def _frame(self, kind: int, flags: int, sid: int, payload: Any) -> None:
        if self.block_sid:  # a header block is open: only its CONTINUATION may follow
            if kind != CONTINUATION or sid != self.block_sid:
                raise H2Error(ErrorCode.PROTOCOL_ERROR, "expected CONTINUATION")
            self.block += payload
            if len(self.block) > MAX_HEADER_LIST:
                raise H2Error(ErrorCode.ENHANCE_YOUR_CALM, "header block too large")
            if flags & END_HEADERS:
                self._headers_done()
            return
        if not self.settings_seen:
            if kind != SETTINGS or flags & ACK:
                raise H2Error(ErrorCode.PROTOCOL_ERROR, "the preface must end with SETTINGS")
            self.settings_seen = True
        if kind == DATA:
            self._data(flags, sid, payload)
        elif kind == HEADERS:
            self._headers(flags, sid, payload)
        elif kind == WINDOW_UPDATE:
            self._window_update(sid, payload)
        elif kind == SETTINGS:
            self._settings(flags, sid, payload)
        elif kind == PING:
            if sid:
                raise H2Error(ErrorCode.PROTOCOL_ERROR, "PING on a stream")
            if len(payload) != 8:
                raise H2Error(ErrorCode.FRAME_SIZE_ERROR, "PING of other than 8 bytes")
            if not flags & ACK:
                self.transport.write(frame(PING, ACK, 0, bytes(payload)))
        elif kind == RST_STREAM:
            self._need_stream(sid, "RST_STREAM")
            if len(payload) != 4:
                raise H2Error(ErrorCode.FRAME_SIZE_ERROR, "RST_STREAM of other than 4 bytes")
            s = self.streams.get(sid)
            if s is not None:
                self._drop(s)
        elif kind == GOAWAY:
            if sid:
                raise H2Error(ErrorCode.PROTOCOL_ERROR, "GOAWAY on a stream")
            if len(payload) < 8:
                raise H2Error(ErrorCode.FRAME_SIZE_ERROR, "GOAWAY shorter than 8 bytes")
            self.draining = True  # the peer starts no more calls; those open finish
            if not self.streams:
                self.transport.close()
        elif kind == PRIORITY:
            if not sid:
                raise H2Error(ErrorCode.PROTOCOL_ERROR, "PRIORITY on stream 0")
            if len(payload) != 5:
                self._rst(sid, ErrorCode.FRAME_SIZE_ERROR)
        elif kind == CONTINUATION:
            raise H2Error(ErrorCode.PROTOCOL_ERROR, "CONTINUATION without HEADERS")
        elif kind == PUSH_PROMISE:  # only servers push
            raise H2Error(ErrorCode.PROTOCOL_ERROR, "PUSH_PROMISE from a client")
        # frames of unknown types are ignored (RFC 9113 4.1)

    def _need_stream(self, sid: int, what: str) -> None:
        if not sid:
            raise H2Error(ErrorCode.PROTOCOL_ERROR, f"{what} on stream 0")
        if sid > self.last_sid:
            raise H2Error(ErrorCode.PROTOCOL_ERROR, f"{what} on idle stream {sid}")

    def _settings(self, flags: int, sid: int, payload: Any) -> None:
        if sid:
            raise H2Error(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & ACK:
            if payload:
                raise H2Error(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            return
        if len(payload) % 6:
            raise H2Error(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS not a multiple of 6 bytes")
        grown = False
        for i in range(0, len(payload), 6):
            key = int.from_bytes(payload[i : i + 2], "big")
            value = int.from_bytes(payload[i + 2 : i + 6], "big")
            if key == Setting.INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise H2Error(ErrorCode.FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE too large")
                delta, self.peer_initial = value - self.peer_initial, value
                for s in self.streams.values():
                    s.send_window += delta
                    if s.send_window > MAX_WINDOW:
                        raise H2Error(ErrorCode.FLOW_CONTROL_ERROR, "stream window overflow")
                grown = grown or delta > 0
            elif key == Setting.MAX_FRAME_SIZE:
                if not MAX_FRAME <= value < 1 << 24:
                    raise H2Error(ErrorCode.PROTOCOL_ERROR, f"MAX_FRAME_SIZE {value}")
                self.peer_max_frame = value
            elif key == Setting.ENABLE_PUSH and value > 1:
                raise H2Error(ErrorCode.PROTOCOL_ERROR, f"ENABLE_PUSH {value}")
        self.transport.write(frame(SETTINGS, ACK, 0))
        if grown:
            self._pump_blocked()

    def _window_update(self, sid: int, payload: Any) -> None:
        if len(payload) != 4:
            raise H2Error(ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE of other than 4 bytes")
        inc = int.from_bytes(payload, "big") & MAX_WINDOW
        if not sid:
            if not inc:
                raise H2Error(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self.send_window += inc
            if self.send_window > MAX_WINDOW:
                raise H2Error(ErrorCode.FLOW_CONTROL_ERROR, "connection window overflow")
            self._pump_blocked()
            return
        self._need_stream(sid, "WINDOW_UPDATE")
        s = self.streams.get(sid)
        if s is None:
            return  # a stream that ended meanwhile
        if not inc:
            self._reset(s, ErrorCode.PROTOCOL_ERROR)
            return
        s.send_window += inc
        if s.send_window > MAX_WINDOW:
            self._reset(s, ErrorCode.FLOW_CONTROL_ERROR)
            return
        self._pump(s)

    def _headers(self, flags: int, sid: int, payload: Any) -> None:
        if not sid:
            raise H2Error(ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0")
        if flags & PADDED:
            pad = payload[0] if payload else 256
            if pad >= len(payload):
                raise H2Error(ErrorCode.PROTOCOL_ERROR, "padding longer than the frame")
            payload = payload[1 : len(payload) - pad]
        if flags & PRIORITY_FLAG:
            if len(payload) < 5:
                raise H2Error(ErrorCode.FRAME_SIZE_ERROR, "HEADERS too short for its priority")
            payload = payload[5:]
        self.block_sid, self.block_flags = sid, flags
        self.block = bytearray(payload)
        if flags & END_HEADERS:
            self._headers_done()

    def _headers_done(self) -> None:
        sid, flags, block = self.block_sid, self.block_flags, bytes(self.block)
        self.block_sid, self.block = 0, bytearray()
        try:  # decoded even for a stream refused below: the table must stay in step
            headers = self.decoder.decode(block, raw=True)
        except OversizedHeaderListError:
            raise H2Error(ErrorCode.ENHANCE_YOUR_CALM, "header list too large") from None
        except (HPACKError, ValueError, IndexError) as exc:
            raise H2Error(ErrorCode.COMPRESSION_ERROR, f"bad header block: {exc}") from None
        s = self.streams.get(sid)
        if s is not None:  # the request's trailers
            if s.remote_closed:
                self._reset(s, ErrorCode.STREAM_CLOSED)
            elif not flags & END_STREAM:
                self._reset(s, ErrorCode.PROTOCOL_ERROR)
            else:
                self._remote_end(s)
            return
        if sid <= self.last_sid:
            self._rst(sid, ErrorCode.STREAM_CLOSED)
            return
        if not sid & 1:
            raise H2Error(ErrorCode.PROTOCOL_ERROR, f"even stream id {sid} from a client")
        self.last_sid = sid
        if self.draining or len(self.streams) >= self.service.max_streams:
            self._rst(sid, ErrorCode.REFUSED_STREAM)
            return
        self._open(sid, headers, bool(flags & END_STREAM))

    def _data(self, flags: int, sid: int, payload: Any) -> None:
        n = len(payload)
        self.recv_window -= n
        if self.recv_window < 0:
            raise H2Error(ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the connection window")
        self.recv_unacked += n
        if not sid:
            raise H2Error(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0")
        if flags & PADDED:
            pad = payload[0] if n else 256
            if pad >= n:
                raise H2Error(ErrorCode.PROTOCOL_ERROR, "padding longer than the frame")
            payload = payload[1 : n - pad]
        s = self.streams.get(sid)
        if s is None or s.remote_closed:
            if sid > self.last_sid:
                raise H2Error(ErrorCode.PROTOCOL_ERROR, f"DATA on idle stream {sid}")
            if s is not None:
                self._reset(s, ErrorCode.STREAM_CLOSED)
            self._replenish(None)
            return
        s.recv_window -= n
        if s.recv_window < 0:
            raise H2Error(ErrorCode.FLOW_CONTROL_ERROR, f"DATA beyond stream {sid}'s window")
        s.recv_unacked += n
        if payload:
            self._take(s, payload)
        if flags & END_STREAM and not s.done:
            self._remote_end(s)
        self._replenish(s)

    def _hold(self, s: Stream, n: int) -> None:
        s.held += n
        self.buffered += n
        if n < 0:
            self._replenish(s)

    def _wake(self, s: Stream) -> None:
        if s.waiter is not None and not s.waiter.done():
            s.waiter.set_result(None)

    def _replenish(self, s: Stream | None) -> None:
        """WINDOW_UPDATEs for what was received, once half a window is used, while the
        connection holds less than its limit of unfinished messages."""
        if self.buffered > self.service.buffer_limit:
            return
        out = b""
        if (
            s is not None
            and not (s.remote_closed or s.done)
            and s.recv_unacked >= STREAM_WINDOW // 2
            and s.held <= self.service.max_message
        ):
            out = frame(WINDOW_UPDATE, 0, s.id, s.recv_unacked.to_bytes(4, "big"))
            s.recv_window += s.recv_unacked
            s.recv_unacked = 0
        if self.recv_unacked >= CONN_WINDOW // 2:
            out += frame(WINDOW_UPDATE, 0, 0, self.recv_unacked.to_bytes(4, "big"))
            self.recv_window += self.recv_unacked
            self.recv_unacked = 0
        if out:
            self.transport.write(out)

    def _send(self, s: Stream, response: Any) -> None:
        """One response message: HEADERS first, then DATA as the peer's windows allow."""
        body = response.SerializeToString()
        data = b"\x00" + len(body).to_bytes(4, "big") + body
        head = b"" if s.headers_sent else frame(HEADERS, END_HEADERS, s.id, RESPONSE_HEADERS)
        s.headers_sent = True
        n = len(data)
        if not s.out and n <= s.send_window and n <= self.send_window and n <= self.peer_max_frame:
            s.send_window -= n
            self.send_window -= n
            self.transport.write(head + frame(DATA, 0, s.id, data))
            return
        if head:
            self.transport.write(head)
        s.out.append(memoryview(data))
        self._pump(s)

    def _end(self, s: Stream, code: int, details: str) -> None:
        """The call's trailers (``code``: its gRPC status), after what waits to be sent;
        then the stream is done."""
        if s.done or s.trailers is not None:
            return
        if code == Status.OK and s.headers_sent:
            block = TRAILERS_OK
        else:
            block = status_block(code, details, s.headers_sent)
        s.headers_sent = True
        s.trailers = frame(HEADERS, END_HEADERS | END_STREAM, s.id, block)
        if s.deadline:
            s.deadline.cancel()
        s.deadline = None
        if not s.out:
            self._finish(s)

    def _pump(self, s: Stream) -> None:
        """Send what the windows let of ``s``'s waiting DATA (and its trailers after)."""
        while s.out:
            room = min(s.send_window, self.send_window, self.peer_max_frame)
            if room <= 0:
                self.blocked[s.id] = s
                return
            head = s.out[0]
            chunk = head[:room]
            if len(chunk) == len(head):
                s.out.popleft()
            else:
                s.out[0] = head[room:]
            s.send_window -= len(chunk)
            self.send_window -= len(chunk)
            self.transport.write(frame(DATA, 0, s.id, bytes(chunk)))
        self.blocked.pop(s.id, None)
        if s.trailers is not None:
            self._finish(s)
        else:
            self._wake(s)  # a stream waiting for its answer to leave

    def _pump_blocked(self) -> None:
        for s in list(self.blocked.values()):
            self._pump(s)

    def _finish(self, s: Stream) -> None:
        """Trailers out; a request still open is told to stop (RST_STREAM NO_ERROR)."""
        assert s.trailers is not None
        out = s.trailers
        if not s.remote_closed:
            out += frame(RST_STREAM, 0, s.id, ErrorCode.NO_ERROR.to_bytes(4, "big"))
        self.transport.write(out)
        self._drop(s)

    def _rst(self, sid: int, code: int) -> None:
        self.transport.write(frame(RST_STREAM, 0, sid, code.to_bytes(4, "big")))

    def _reset(self, s: Stream, code: int) -> None:
        """A stream error: RST_STREAM(code), the call is abandoned."""
        self._rst(s.id, code)
        self._drop(s)

    def _drop(self, s: Stream) -> None:
        """Forget ``s`` (ended, reset or its connection lost); its result, if its method
        still runs, is discarded."""
        if s.done:
            return
        s.done = True
        self.streams.pop(s.id, None)
        self.blocked.pop(s.id, None)
        if s.deadline:
            s.deadline.cancel()
        if s.held:
            self.buffered -= s.held
            s.held = 0
        s.queue.clear()
        s.out.clear()
        self._wake(s)
        if self.draining and not self.streams and not self.failed:
            self.transport.close()
