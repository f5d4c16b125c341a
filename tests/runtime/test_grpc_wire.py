"""The gRPC face's own HTTP/2 (runtime.h2_conn / grpc_wire / grpc_server), byte by byte
over a real loopback socket: preface and SETTINGS (acked both ways), PING, a unary call
from hand-built HEADERS+DATA and with tritonclient.grpc, flow control both ways, and
bad input (malformed frames answered with GOAWAY, oversized or compressed messages with
their gRPC status), graceful GOAWAY on shutdown."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import hpack
import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb

from edgeintel.runtime.h2_conn import CONN_WINDOW, MAX_HEADER_LIST, STREAM_WINDOW
from edgeintel.runtime.h2_frames import (
    ACK,
    DATA,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    PING,
    PREFACE,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    ErrorCode,
    Setting,
    frame,
    grpc_message,
    literal,
    settings_payload,
)
from edgeintel.runtime.repository import ModelRepository
from edgeintel.runtime.server import InferenceServer
from edgeintel.runtime.settings import ServerSettings
from tests.runtime.conftest import sample_digits

INFER = b"/inference.GRPCInferenceService/ModelInfer"


@contextmanager
def running(repo: Path, **settings: Any) -> Iterator[InferenceServer]:
    """An ``InferenceServer`` with its gRPC port, on an event loop in a thread."""
    loop = asyncio.new_event_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, ctx: errors.append(ctx))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    srv = InferenceServer(ModelRepository(repo), ServerSettings(**settings), grpc_port=0)
    asyncio.run_coroutine_threadsafe(srv.start(), loop).result(30)
    srv.test_loop, srv.test_errors = loop, errors  # type: ignore[attr-defined]
    try:
        yield srv
    finally:
        asyncio.run_coroutine_threadsafe(srv.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture(scope="module")
def server(model_repo: Path) -> Iterator[InferenceServer]:
    with running(model_repo, max_request_bytes=4096) as srv:
        yield srv


class Peer:
    """A blocking HTTP/2 client made of hand-built frames."""

    def __init__(self, port: int, settings: dict[int, int] | None = None, preface: bool = True):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.decoder = hpack.Decoder()
        self.buf = b""
        if preface:
            self.send(PREFACE + frame(SETTINGS, 0, 0, settings_payload(settings or {})))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read(self) -> tuple[int, int, int, bytes]:
        head = self._exactly(9)
        size = int.from_bytes(head[:3], "big")
        sid = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
        return head[3], head[4], sid, self._exactly(size)

    def until(self, kind: int, sid: int | None = None, flags: int = 0) -> list[Any]:
        """Frames read up to and with the first of ``kind`` (on ``sid``, with ``flags``)."""
        seen = []
        while True:
            f = self.read()
            seen.append(f)
            if f[0] == kind and (sid is None or f[2] == sid) and f[1] & flags == flags:
                return seen

    def headers(self, payload: bytes) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.decoder.decode(payload, raw=True)}

    def close(self) -> None:
        self.sock.close()


def _request_block(path: bytes = INFER) -> bytes:
    return (
        b"\x83\x86"  # :method POST, :scheme http (static table)
        + literal(b":path", path)
        + literal(b":authority", b"localhost")
        + literal(b"content-type", b"application/grpc")
        + literal(b"te", b"trailers")
    )


def _message(msg: Any, flag: int = 0) -> bytes:
    body = msg.SerializeToString()
    return bytes((flag,)) + len(body).to_bytes(4, "big") + body


def _infer_request() -> Any:
    x = sample_digits(1)
    req = pb.ModelInferRequest(model_name="digits", id="wire")
    req.inputs.add(name="input", datatype="FP32", shape=list(x.shape))
    req.raw_input_contents.append(x.tobytes())
    return req


def _call(peer: Peer, sid: int, message: bytes, path: bytes = INFER) -> None:
    peer.send(
        frame(HEADERS, END_HEADERS, sid, _request_block(path))
        + frame(DATA, END_STREAM, sid, message)
    )


def _answer(peer: Peer, sid: int) -> tuple[dict[str, str], bytes, dict[str, str]]:
    """(response headers, DATA bytes, trailers) of stream ``sid``."""
    head: dict[str, str] = {}
    data = b""
    for kind, flags, s, payload in peer.until(HEADERS, sid, END_STREAM):
        if s != sid:
            continue
        if kind == DATA:
            data += payload
        elif kind == HEADERS and not flags & END_STREAM:
            head = peer.headers(payload)
        elif kind == HEADERS:
            return head, data, peer.headers(payload)
    raise AssertionError("unreachable")


def test_preface_settings_and_ping_are_acknowledged(server: InferenceServer) -> None:
    peer = Peer(server.grpc_port or 0)
    try:
        kind, flags, sid, payload = peer.read()  # the server's preface: its SETTINGS
        assert (kind, flags, sid) == (SETTINGS, 0, 0)
        got = {
            int.from_bytes(payload[i : i + 2], "big"): int.from_bytes(payload[i + 2 : i + 6], "big")
            for i in range(0, len(payload), 6)
        }
        assert got[Setting.MAX_CONCURRENT_STREAMS] == server.settings.max_connections
        assert got[Setting.INITIAL_WINDOW_SIZE] == STREAM_WINDOW
        assert got[Setting.MAX_HEADER_LIST_SIZE] == MAX_HEADER_LIST
        kind, _, _, payload = peer.read()
        assert kind == WINDOW_UPDATE and int.from_bytes(payload, "big") == CONN_WINDOW - 65_535
        assert peer.read()[:2] == (SETTINGS, ACK)  # ours acknowledged
        peer.send(frame(SETTINGS, ACK, 0) + frame(PING, 0, 0, b"12345678"))
        assert peer.read() == (PING, ACK, 0, b"12345678")
    finally:
        peer.close()


def test_unary_call_from_hand_built_frames(server: InferenceServer) -> None:
    peer = Peer(server.grpc_port or 0)
    try:
        _call(peer, 1, _message(_infer_request()))
        head, data, trailers = _answer(peer, 1)
        assert head[":status"] == "200" and head["content-type"] == "application/grpc"
        assert data[0] == 0 and int.from_bytes(data[1:5], "big") == len(data) - 5
        resp = pb.ModelInferResponse.FromString(data[5:])
        assert resp.id == "wire" and resp.model_name == "digits"
        assert len(resp.raw_output_contents[0]) == 40
        assert trailers == {"grpc-status": "0"}
        # an unknown method on the same connection: trailers-only UNIMPLEMENTED
        _call(peer, 3, _message(pb.ServerLiveRequest()), b"/inference.GRPCInferenceService/Nope")
        head, data, trailers = _answer(peer, 3)
        assert data == b"" and trailers["grpc-status"] == "12"
    finally:
        peer.close()


def test_tritonclient_grpc_end_to_end(server: InferenceServer) -> None:
    import tritonclient.grpc as grpcclient

    c = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    try:
        assert c.is_server_live() and c.is_model_ready("digits")
        x = sample_digits(2)
        inp = grpcclient.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        out = c.infer("digits", [inp]).as_numpy("logits")
        assert out is not None and out.shape == (2, 10) and np.isfinite(out).all()
    finally:
        c.close()


def test_flow_control_both_ways(server: InferenceServer) -> None:
    """Sends wait for the peer's window; the server opens its windows as it reads."""
    peer = Peer(server.grpc_port or 0, {Setting.INITIAL_WINDOW_SIZE: 16})
    try:
        _call(peer, 1, _message(_infer_request()))
        frames = peer.until(DATA, 1)
        assert len(frames[-1][3]) == 16  # no more than the stream's window
        peer.send(frame(WINDOW_UPDATE, 0, 1, (1000).to_bytes(4, "big")))
        _, data, trailers = _answer(peer, 1)
        assert trailers == {"grpc-status": "0"}
        resp = pb.ModelInferResponse.FromString((frames[-1][3] + data)[5:])
        assert len(resp.raw_output_contents[0]) == 40
        # a stream of requests (~3.5 KiB each): its window is replenished as they are read
        req = _infer_request()
        req.parameters["pad"].string_param = "x" * 3500
        stream = b"/inference.GRPCInferenceService/ModelStreamInfer"
        peer.send(
            frame(HEADERS, END_HEADERS, 3, _request_block(stream))
            + frame(WINDOW_UPDATE, 0, 3, (1 << 20).to_bytes(4, "big"))
        )
        msg = _message(req)
        sent = 0
        while sent < STREAM_WINDOW // 2 + len(msg):
            peer.send(
                b"".join(frame(DATA, 0, 3, msg[i : i + 16384]) for i in range(0, len(msg), 16384))
            )
            sent += len(msg)
        frames = peer.until(WINDOW_UPDATE, 3)
        assert int.from_bytes(frames[-1][3], "big") >= STREAM_WINDOW // 2
        peer.send(frame(DATA, END_STREAM, 3, b""))
        _, data, trailers = _answer(peer, 3)
        assert trailers == {"grpc-status": "0"}
    finally:
        peer.close()


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (frame(DATA, 0, 0, b"x"), ErrorCode.PROTOCOL_ERROR),  # DATA on stream 0
        (frame(HEADERS, END_HEADERS, 2, _request_block()), ErrorCode.PROTOCOL_ERROR),  # even id
        (frame(PING, 0, 0, b"short"), ErrorCode.FRAME_SIZE_ERROR),
        (frame(SETTINGS, 0, 0, b"12345"), ErrorCode.FRAME_SIZE_ERROR),
        (b"\x01\x00\x00" + bytes((DATA, 0)) + (1).to_bytes(4, "big"), ErrorCode.FRAME_SIZE_ERROR),
        (frame(HEADERS, END_HEADERS, 1, b"\xff\xff\xff\xff"), ErrorCode.COMPRESSION_ERROR),
        (frame(WINDOW_UPDATE, 0, 0, (0).to_bytes(4, "big")), ErrorCode.PROTOCOL_ERROR),
    ],
)
def test_malformed_frames_get_goaway(server: InferenceServer, bad: bytes, code: int) -> None:
    peer = Peer(server.grpc_port or 0)
    try:
        peer.send(bad)
        payload = peer.until(GOAWAY)[-1][3]
        assert int.from_bytes(payload[4:8], "big") == code
        with pytest.raises(ConnectionError):  # and the connection closes
            peer.until(-1)
    finally:
        peer.close()


def test_bad_preface_gets_goaway(server: InferenceServer) -> None:
    peer = Peer(server.grpc_port or 0, preface=False)
    try:
        peer.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        payload = peer.until(GOAWAY)[-1][3]
        assert int.from_bytes(payload[4:8], "big") == ErrorCode.PROTOCOL_ERROR
    finally:
        peer.close()


def test_oversized_and_compressed_messages_get_their_status(server: InferenceServer) -> None:
    peer = Peer(server.grpc_port or 0)
    try:
        # declared 5000 bytes > max_request_bytes 4096: refused before the bytes arrive
        peer.send(
            frame(HEADERS, END_HEADERS, 1, _request_block())
            + frame(DATA, 0, 1, b"\x00" + (5000).to_bytes(4, "big") + b"x" * 100)
        )
        frames = peer.until(RST_STREAM, 1)
        _, _, _, trailers = next(f for f in frames if f[0] == HEADERS and f[2] == 1)
        got = peer.headers(trailers)
        assert got["grpc-status"] == "8"  # RESOURCE_EXHAUSTED
        assert "5000" in got["grpc-message"] and "4096" in got["grpc-message"]
        _call(peer, 3, _message(_infer_request(), flag=1))
        trailers_ = _answer(peer, 3)[2]
        assert trailers_["grpc-status"] == "12" and "compressed" in trailers_["grpc-message"]
        _call(peer, 5, _message(_infer_request()))  # the connection still serves
        assert _answer(peer, 5)[2] == {"grpc-status": "0"}
    finally:
        peer.close()


def test_random_frames_never_break_the_server(
    server: InferenceServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Hand-built junk after a valid preface (random frame types, flags, stream ids and
    payloads): each connection ends or goes on, the loop reports no exception, and the
    server still answers."""
    caplog.set_level(logging.INFO, "edgeintel.runtime.server")
    rng = np.random.default_rng(7)
    for _ in range(60):
        peer = Peer(server.grpc_port or 0)
        try:
            junk = b"".join(
                frame(
                    int(rng.integers(0, 11)),
                    int(rng.integers(0, 256)),
                    int(rng.integers(0, 8)),
                    rng.bytes(int(rng.integers(0, 40))),
                )
                for _ in range(int(rng.integers(1, 6)))
            )
            peer.send(junk)
            peer.sock.settimeout(0.5)
            with suppress(ConnectionError, TimeoutError):
                peer.until(GOAWAY)
        finally:
            peer.close()
    assert server.test_errors == []  # type: ignore[attr-defined]
    assert '"event": "error"' not in caplog.text  # nor a bug caught and logged
    peer = Peer(server.grpc_port or 0)
    try:
        _call(peer, 1, _message(_infer_request()))
        assert _answer(peer, 1)[2] == {"grpc-status": "0"}
    finally:
        peer.close()


def test_grpc_message_is_percent_encoded() -> None:
    assert grpc_message("50% done: é\n") == b"50%25 done: %C3%A9%0A"


def test_shutdown_sends_goaway_and_lets_calls_finish(model_repo: Path) -> None:
    from edgeintel.runtime.grpc_server import stop_grpc

    with running(model_repo) as srv:
        peer = Peer(srv.grpc_port or 0)
        try:
            # a call whose request is still open, then a PING to know the server read it
            peer.send(frame(HEADERS, END_HEADERS, 1, _request_block()))
            peer.send(frame(PING, 0, 0, b"synced!!"))
            peer.until(PING, flags=ACK)
            loop = srv.test_loop  # type: ignore[attr-defined]
            stopping = asyncio.run_coroutine_threadsafe(stop_grpc(srv._grpc, 10), loop)
            payload = peer.until(GOAWAY)[-1][3]
            assert int.from_bytes(payload[:4], "big") == 1  # the call is let through
            assert int.from_bytes(payload[4:8], "big") == ErrorCode.NO_ERROR
            peer.send(frame(DATA, END_STREAM, 1, _message(_infer_request())))
            assert _answer(peer, 1)[2] == {"grpc-status": "0"}
            stopping.result(10)
            srv._grpc = None
            with pytest.raises(ConnectionError):  # then the connection closes
                peer.until(-1)
        finally:
            peer.close()


def test_connection_and_stream_limits_and_body_timeout(model_repo: Path) -> None:
    """max_connections bounds connections (GOAWAY) and streams per connection
    (REFUSED_STREAM, advertised); a unary request not received within body_timeout_s
    ends DEADLINE_EXCEEDED; so does a call past its grpc-timeout."""
    with running(model_repo, max_connections=2, body_timeout_s=0.3) as srv:
        port = srv.grpc_port or 0
        a, b = Peer(port), Peer(port)
        try:
            a.until(SETTINGS, flags=ACK)
            b.until(SETTINGS, flags=ACK)
            c = Peer(port)
            payload = c.until(GOAWAY)[-1][3]
            assert int.from_bytes(payload[4:8], "big") == ErrorCode.ENHANCE_YOUR_CALM
            c.close()
            # two open calls (requests not finished), a third refused
            for sid in (1, 3, 5):
                a.send(frame(HEADERS, END_HEADERS, sid, _request_block()))
            rst = a.until(RST_STREAM, 5)[-1]
            assert int.from_bytes(rst[3], "big") == ErrorCode.REFUSED_STREAM
            trailers = _answer(a, 1)[2]  # the body timeout ends the open ones
            assert trailers["grpc-status"] == "4" and "0.3 s" in trailers["grpc-message"]
            block = _request_block() + literal(b"grpc-timeout", b"50m")
            b.send(frame(HEADERS, END_HEADERS, 1, block))
            assert _answer(b, 1)[2]["grpc-status"] == "4"
        finally:
            a.close()
            b.close()
