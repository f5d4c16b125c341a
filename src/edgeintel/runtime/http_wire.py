"""The HTTP server's connection protocol: uvicorn's httptools protocol with two changes
to what goes over the socket (measured under TLS, where each costs most: docs/runtime.md).

* **One write per response.** uvicorn writes a response's head and body separately;
  over TLS each write is its own record (header, AEAD tag, a send and a wake-up of the
  client). ``CoalescingTransport`` gathers the writes a handler makes in one step of
  the event loop and sends them as one (at once past ``COALESCE_BYTES``, and before a
  close).
* **Reads into a reused buffer.** Behind ``BufferedReader`` the connection hands the
  transport a buffer to decrypt (TLS) or receive into; with a plain ``Protocol``,
  uvloop's TLS layer allocates a 256 KiB ``bytes`` per read attempt (two per request).
  The parser copies what it keeps (URL, headers, body), so one buffer per thread is
  reused by every connection of that thread's event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = [
    "COALESCE_BYTES",
    "READ_BUFFER_BYTES",
    "BufferedReader",
    "CoalescingTransport",
    "WireProtocol",
    "buffered",
]

COALESCE_BYTES = 64 * 1024  # gathered writes above this go out at once (streamed bodies)
READ_BUFFER_BYTES = 64 * 1024  # one read's most bytes (a TLS record carries <= 16 KiB)

_local = threading.local()


def _read_buffer() -> memoryview:
    """This thread's receive buffer (an event loop runs in one thread; the parser copies
    what it keeps before the next read fills the buffer again)."""
    view: memoryview | None = getattr(_local, "view", None)
    if view is None:
        view = _local.view = memoryview(bytearray(READ_BUFFER_BYTES))
    return view


class CoalescingTransport:
    """A transport whose writes of one event-loop step leave as one ``write``.

    Everything but ``write``/``writelines``/``close`` is the wrapped transport's; a
    close sends what was gathered first. Writes to a transport that closed meanwhile are
    dropped, as the transport itself would.
    """

    __slots__ = ("_buf", "_loop", "_size", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._buf: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._buf:
            self._loop.call_soon(self.flush)
        self._buf.append(data)
        self._size += len(data)
        if self._size >= COALESCE_BYTES:
            self.flush()

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        """Send what was gathered (no-op when nothing is)."""
        if not self._buf:
            return
        data = self._buf[0] if len(self._buf) == 1 else b"".join(self._buf)
        self._buf.clear()
        self._size = 0
        if not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class WireProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing each response once (``CoalescingTransport``);
    request handling is uvicorn's. ``buffered`` makes its connections read into the
    reused buffer."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # responses (RequestResponseCycle) write through the coalescing wrapper; flow
        # control (pause/resume reading) was bound to the real transport above
        self.transport = CoalescingTransport(transport, self.loop)  # type: ignore[assignment]


class BufferedReader(asyncio.BufferedProtocol):
    """What the event loop sees of one connection: reads land in this thread's reused
    buffer and go to ``http`` (an ``asyncio.Protocol``) as its ``data_received``. uvloop
    reads into a protocol's buffer only when it is not an ``asyncio.Protocol``, which
    uvicorn's are; hence this adapter rather than a mixin."""

    __slots__ = ("http",)

    def __init__(self, http: asyncio.Protocol) -> None:
        self.http = http

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.http.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.http.connection_lost(exc)

    def pause_writing(self) -> None:
        self.http.pause_writing()

    def resume_writing(self) -> None:
        self.http.resume_writing()

    def eof_received(self) -> bool | None:
        return self.http.eof_received()

    def get_buffer(self, sizehint: int) -> memoryview:
        return _read_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        self.http.data_received(_read_buffer()[:nbytes])  # type: ignore[arg-type]


def buffered(protocol: type[asyncio.Protocol]) -> Callable[..., BufferedReader]:
    """A uvicorn ``http`` protocol factory: ``protocol(**kwargs)`` behind a
    ``BufferedReader``."""

    def create(**kwargs: Any) -> BufferedReader:
        return BufferedReader(protocol(**kwargs))

    return create
