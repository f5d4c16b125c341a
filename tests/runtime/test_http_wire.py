"""The HTTP server's wire protocol: writes of one event-loop step leave as one write,
a close sends what was gathered first, large writes are not held back, and reads land in
a reused buffer (the TLS record count on a real server is in test_mtls.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from edgeintel.runtime.http_wire import (
    COALESCE_BYTES,
    BufferedReader,
    CoalescingTransport,
    WireProtocol,
    _read_buffer,
    buffered,
)


class _Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1)}.get(name, default)


def _run(body: Any) -> Any:
    return asyncio.run(body())


def test_writes_of_one_step_leave_as_one() -> None:
    async def body() -> list[bytes]:
        raw = _Recorder()
        t = CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
        t.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        t.write(b"")
        t.writelines([b"o", b"k"])
        assert raw.writes == []  # held until the step ends
        await asyncio.sleep(0)
        t.write(b"next")
        await asyncio.sleep(0)
        assert t.get_extra_info("peername") == ("127.0.0.1", 1)  # the rest is the transport's
        return raw.writes

    assert _run(body) == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", b"next"]


def test_close_sends_first_and_large_writes_go_at_once() -> None:
    async def body() -> None:
        raw = _Recorder()
        t = CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
        t.write(b"head")
        t.close()
        assert raw.writes == [b"head"] and raw.closed
        await asyncio.sleep(0)  # the scheduled flush finds nothing (and no closed write)
        assert raw.writes == [b"head"]
        raw2 = _Recorder()
        t2 = CoalescingTransport(raw2, asyncio.get_running_loop())  # type: ignore[arg-type]
        t2.write(b"a" * 10)
        t2.write(b"b" * COALESCE_BYTES)
        assert raw2.writes == [b"a" * 10 + b"b" * COALESCE_BYTES]
        t2.write(b"late")
        raw2.closed = True  # the peer went away before the step ended: dropped
        await asyncio.sleep(0)
        assert len(raw2.writes) == 1

    _run(body)


def test_connections_read_into_one_reused_buffer() -> None:
    """uvloop reads into a protocol's buffer only if it is no ``asyncio.Protocol``."""
    events: list[Any] = []

    class Http(asyncio.Protocol):
        def __init__(self, **kwargs: Any) -> None:
            events.append(kwargs)

        def connection_made(self, transport: Any) -> None:
            events.append(("made", transport))

        def data_received(self, data: bytes) -> None:
            events.append(bytes(data))

        def connection_lost(self, exc: Exception | None) -> None:
            events.append(("lost", exc))

    proto = buffered(Http)(config="c")
    assert isinstance(proto, BufferedReader) and not isinstance(proto, asyncio.Protocol)
    proto.connection_made("t")  # type: ignore[arg-type]
    buf = proto.get_buffer(-1)
    assert buf is _read_buffer() and len(buf) >= 16 * 1024  # a whole TLS record fits
    buf[:5] = b"GET /"
    proto.buffer_updated(5)
    buf[:3] = b"abc"  # the next read reuses the buffer; the protocol got a copy's worth
    proto.buffer_updated(3)
    proto.connection_lost(None)
    assert events == [{"config": "c"}, ("made", "t"), b"GET /", b"abc", ("lost", None)]
    assert issubclass(WireProtocol, asyncio.Protocol)  # uvicorn's, coalescing its writes
