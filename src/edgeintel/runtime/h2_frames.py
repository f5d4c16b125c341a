"""HTTP/2 (RFC 9113) as the gRPC face speaks it: frame types, flags, error codes,
settings, frame encoding, and the constant HPACK header blocks of gRPC responses.

Responses are encoded without the dynamic table: every field is a literal without
indexing (RFC 7541 6.2.2), always valid whatever the peer's table size, so the common
blocks (response headers, the OK trailers) are built once. Requests are decoded with
the ``hpack`` package (``runtime.grpc_wire``).
"""

from __future__ import annotations

__all__ = [
    "ACK",
    "CONTINUATION",
    "DATA",
    "END_HEADERS",
    "END_STREAM",
    "GOAWAY",
    "HEADERS",
    "MAX_WINDOW",
    "PADDED",
    "PING",
    "PREFACE",
    "PRIORITY",
    "PRIORITY_FLAG",
    "PUSH_PROMISE",
    "RESPONSE_HEADERS",
    "RST_STREAM",
    "SETTINGS",
    "TRAILERS_OK",
    "WINDOW_UPDATE",
    "ErrorCode",
    "H2Error",
    "Setting",
    "frame",
    "grpc_message",
    "literal",
    "settings_payload",
    "status_block",
]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_WINDOW = 2**31 - 1  # the largest flow-control window (RFC 9113 6.9.1)

# frame types (RFC 9113 6)
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS = 0x0, 0x1, 0x2, 0x3, 0x4
PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0x5, 0x6, 0x7, 0x8, 0x9
# flags
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20


class ErrorCode:
    """RST_STREAM / GOAWAY error codes (RFC 9113 7)."""

    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    ENHANCE_YOUR_CALM = 0xB


class Setting:
    """SETTINGS identifiers (RFC 9113 6.5.2)."""

    HEADER_TABLE_SIZE = 0x1
    ENABLE_PUSH = 0x2
    MAX_CONCURRENT_STREAMS = 0x3
    INITIAL_WINDOW_SIZE = 0x4
    MAX_FRAME_SIZE = 0x5
    MAX_HEADER_LIST_SIZE = 0x6


class H2Error(Exception):
    """A connection error: answered with GOAWAY(``code``) and the connection closed."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    """One frame: 9-byte header (24-bit length, type, flags, stream id) and payload."""
    return (
        len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream.to_bytes(4, "big") + payload
    )


def settings_payload(values: dict[int, int]) -> bytes:
    """A SETTINGS payload: 6 bytes per (identifier, value)."""
    return b"".join(k.to_bytes(2, "big") + v.to_bytes(4, "big") for k, v in values.items())


def _integer(value: int, prefix_bits: int, first: int) -> bytes:
    """An HPACK integer (RFC 7541 5.1) with ``first``'s high bits as the pattern."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def literal(name: bytes, value: bytes) -> bytes:
    """A header field as a literal without indexing, new name, no Huffman coding."""
    return b"\x00" + _integer(len(name), 7, 0) + name + _integer(len(value), 7, 0) + value


_STATUS_200 = b"\x88"  # ":status: 200", static table entry 8
_CONTENT_TYPE = literal(b"content-type", b"application/grpc")
#: the response HEADERS block of every gRPC call answered with messages
RESPONSE_HEADERS = _STATUS_200 + _CONTENT_TYPE + literal(b"grpc-accept-encoding", b"identity")
#: the trailers of a call that succeeded
TRAILERS_OK = literal(b"grpc-status", b"0")

_MAX_MESSAGE = 4096  # bytes of grpc-message kept (the block fits one frame)
_KEEP = frozenset(b for b in range(0x20, 0x7F) if b != 0x25)  # printable ASCII but '%'


def grpc_message(details: str) -> bytes:
    """``details`` percent-encoded as the gRPC spec wants ``grpc-message`` (UTF-8; bytes
    outside printable ASCII, and '%', as %XX), at most ``_MAX_MESSAGE`` bytes."""
    raw = details.encode("utf-8", "replace")
    out = bytearray()
    for b in raw:
        if b in _KEEP:
            out.append(b)
        else:
            out += b"%%%02X" % b
        if len(out) >= _MAX_MESSAGE:
            break
    return bytes(out)


def status_block(code: int, details: str, headers_sent: bool) -> bytes:
    """The trailers of a call ending with gRPC status ``code``; ``headers_sent`` False:
    a trailers-only response (``:status`` and content-type first)."""
    block = b"" if headers_sent else _STATUS_200 + _CONTENT_TYPE
    if code == 0 and not details:
        return block + TRAILERS_OK
    block += literal(b"grpc-status", str(code).encode())
    if details:
        block += literal(b"grpc-message", grpc_message(details))
    return block
