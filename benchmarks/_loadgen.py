"""Load generator for bench_serve: many concurrent keep-alive HTTP/1.1 clients on asyncio
(one buffered protocol per connection: the transport reads, and under TLS decrypts, into
the connection's buffer, with no allocation per read).

Run as its own process (``python benchmarks/_loadgen.py '<json config>'``) so that the
clients do not share the server's interpreter; prints one JSON object. Every 200 response
is decoded with the protocol's decoder and checked (output name, shape, datatype); any
other status or an undecodable body counts as a failure.

With ``"protocol": "grpc"`` the clients are unary ``ModelInfer`` calls (raw tensor
contents) on ``grpc_port`` over the generator's own minimal HTTP/2 client (``_H2Conn``:
``grpc_channels`` connections, default one, each multiplexing its share of the calls as
one tritonclient.grpc channel does); every answer is decoded (a ``ModelInferResponse``)
and its output checked. It is lean on purpose, as the HTTP/1.1 client is: grpc.aio took
about twice this client's CPU per call (ad hoc, 0.13-0.27 against 0.07-0.10 ms) on the
cores the server shares, which is no fact about the server.

With ``"tls": {"cert", "key", "ca"}`` each client opens its connection over mutual TLS
(presents that certificate, verifies the server by the CA) once and keeps it alive.

Closed loop (``rate`` absent): ``concurrency`` clients each send the next request as soon
as the previous answer arrives. Open loop (``rate`` given): request ``i`` is due at
``i / rate`` seconds and its latency is measured from that due time (no coordinated
omission).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from edgeintel.runtime.protocol import decode_response, encode_request


def _client_ssl(cfg: dict[str, Any]) -> Any:
    """The clients' TLS context (None: plaintext)."""
    tls = cfg.get("tls")
    if not tls:
        return None
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls["ca"])
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(tls["cert"], tls["key"])
    return ctx


def _chunked(buf: bytearray, at: int, n: int) -> tuple[bytes, int] | None:
    """A ``Transfer-Encoding: chunked`` body starting at ``buf[at]`` and where it ends
    (trailers included), or None while it is incomplete in ``buf[:n]``."""
    parts = []
    while True:
        eol = buf.find(b"\r\n", at, n)
        if eol < 0:
            return None
        size = int(bytes(buf[at:eol]).split(b";")[0], 16)
        at = eol + 2
        if size == 0:
            while True:  # trailers, then the empty line
                eol = buf.find(b"\r\n", at, n)
                if eol < 0:
                    return None
                if eol == at:
                    return b"".join(parts), eol + 2
                at = eol + 2
        if n < at + size + 2:
            return None
        parts.append(bytes(buf[at : at + size]))
        at += size + 2


class _Received(asyncio.BufferedProtocol):
    """A receive buffer that asyncio reads into directly and that doubles when full:
    ``buf[:n]`` holds the bytes received and not yet consumed."""

    def __init__(self) -> None:
        self.buf = bytearray(1 << 16)
        self.view = memoryview(self.buf)
        self.n = 0  # bytes in buf
        self.transport: Any = None

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.n == len(self.buf):
            self.buf.extend(bytes(len(self.buf)))
            self.view = memoryview(self.buf)
        return self.view[self.n :]


class _Conn(_Received):
    """One keep-alive HTTP/1.1 client connection: the transport reads into this buffer
    (no allocation per read, under TLS too) and a response is complete when its
    Content-Length bytes are in."""

    def __init__(self) -> None:
        super().__init__()
        self.waiter: asyncio.Future[tuple[int, dict[bytes, bytes], bytes]] | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def buffer_updated(self, nbytes: int) -> None:
        self.n += nbytes
        end = self.buf.find(b"\r\n\r\n", 0, self.n)
        if end < 0 or self.waiter is None:
            return
        lines = bytes(self.buf[:end]).split(b"\r\n")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers[k.strip().lower()] = v.strip()
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            got = _chunked(self.buf, end + 4, self.n)  # uvicorn streams KServe's, MLServer's
            if got is None:
                return
            body, stop = got
        else:
            stop = end + 4 + int(headers.get(b"content-length", b"0"))
            if self.n < stop:
                return
            body = bytes(self.buf[end + 4 : stop])
        rest = self.n - stop
        self.buf[:rest] = self.buf[stop : self.n]
        self.n = rest
        status = int(lines[0].split()[1])
        self.waiter.set_result((status, headers, body))
        self.waiter = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionError("closed by the server"))

    def request(self, req: bytes) -> asyncio.Future[tuple[int, dict[bytes, bytes], bytes]]:
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(req)
        return self.waiter


async def _worker(cfg: dict[str, Any], req: bytes, state: dict[str, Any], t0: float) -> None:
    ctx = state["ssl"]
    _, conn = await asyncio.get_running_loop().create_connection(
        _Conn, cfg["host"], cfg["port"], ssl=ctx, server_hostname=cfg["host"] if ctx else None
    )
    rate = cfg.get("rate")
    try:
        while True:
            i = state["next"]
            if i >= cfg["requests"]:
                return
            state["next"] += 1
            due = t0 + i / rate if rate else None
            if due is not None:
                wait = due - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
            start = due if due is not None else time.perf_counter()
            status, headers, body = await conn.request(req)
            state["lat"].append(time.perf_counter() - start)
            ok = status == 200
            if ok:
                try:
                    hl = headers.get(b"inference-header-content-length")
                    out = decode_response(body, int(hl) if hl else None)
                    arr = out[cfg["output"]]
                    ok = arr.shape == tuple(cfg["output_shape"]) and arr.dtype == np.float32
                except Exception:
                    ok = False
            state["ok" if ok else "failed"] += 1
            if not ok:
                state["statuses"][str(status)] = state["statuses"].get(str(status), 0) + 1
    finally:
        conn.transport.close()


# HTTP/2 (RFC 9113) as a gRPC client needs it: frame types, flags, the largest window
_DATA, _HEADERS, _RST_STREAM, _SETTINGS, _PING, _GOAWAY, _WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
_END_STREAM, _ACK, _END_HEADERS, _PADDED = 0x1, 0x1, 0x4, 0x8
_MAX_WINDOW = 2**31 - 1
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_MODEL_INFER = b"/inference.GRPCInferenceService/ModelInfer"


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return (
        len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream.to_bytes(4, "big") + payload
    )


def _literal(name: bytes, value: bytes) -> bytes:
    """An HPACK header field without indexing, new name, no Huffman (RFC 7541 6.2.2)."""
    assert len(name) < 127 and len(value) < 127
    return b"\x00" + bytes((len(name),)) + name + bytes((len(value),)) + value


class _H2Conn(_Received):
    """One HTTP/2 connection carrying unary gRPC calls of one pre-encoded request (the
    header block and the length-prefixed message are built once; a call writes its
    HEADERS and DATA frames in one write). Flow control: the connection's and streams'
    receive windows are opened to the maximum at once; sends respect the server's
    connection window. SETTINGS and PING are acknowledged. A call's answer is its DATA
    bytes once the stream ends (a failed call, answered trailers-only, has none)."""

    def __init__(self, authority: str, message: bytes) -> None:
        super().__init__()
        self.next_id = 1
        self.calls: dict[int, tuple[asyncio.Future[bytes], list[bytes]]] = {}
        self.window = 65_535  # what the server lets this connection send
        self.blocked: list[tuple[bytes, asyncio.Future[bytes], int]] = []
        block = b"\x83\x86" + _literal(b":path", _MODEL_INFER)  # POST, http (static table)
        block += _literal(b":authority", authority.encode())
        block += _literal(b"content-type", b"application/grpc") + _literal(b"te", b"trailers")
        self.head = (len(block).to_bytes(3, "big") + bytes((_HEADERS, _END_HEADERS)), block)
        self.data = (len(message).to_bytes(3, "big") + bytes((_DATA, _END_STREAM)), message)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        settings = (2).to_bytes(2, "big") + (0).to_bytes(4, "big")  # no server push
        settings += (4).to_bytes(2, "big") + _MAX_WINDOW.to_bytes(4, "big")  # stream window
        more = (_MAX_WINDOW - 65_535).to_bytes(4, "big")
        transport.write(
            _PREFACE + _frame(_SETTINGS, 0, 0, settings) + _frame(_WINDOW_UPDATE, 0, 0, more)
        )

    def buffer_updated(self, nbytes: int) -> None:
        self.n += nbytes
        buf, at = self.buf, 0
        while self.n - at >= 9:
            size = int.from_bytes(buf[at : at + 3], "big")
            stop = at + 9 + size
            if self.n < stop:
                break
            kind, flags = buf[at + 3], buf[at + 4]
            stream = int.from_bytes(buf[at + 5 : at + 9], "big") & _MAX_WINDOW
            self._frame_in(kind, flags, stream, at + 9, stop)
            at = stop
        if at:
            buf[: self.n - at] = buf[at : self.n]
            self.n -= at

    def _frame_in(self, kind: int, flags: int, stream: int, at: int, stop: int) -> None:
        if kind in (_DATA, _HEADERS):
            call = self.calls.get(stream)
            if call is None:
                return
            if kind == _DATA:
                if flags & _PADDED:
                    stop -= self.buf[at]
                    at += 1
                call[1].append(bytes(self.buf[at:stop]))
            if flags & _END_STREAM:
                del self.calls[stream]
                call[0].set_result(b"".join(call[1]))
        elif kind == _SETTINGS and not flags & _ACK:
            self.transport.write(_frame(_SETTINGS, _ACK, 0))
        elif kind == _PING and not flags & _ACK:
            self.transport.write(_frame(_PING, _ACK, 0, bytes(self.buf[at:stop])))
        elif kind == _WINDOW_UPDATE and stream == 0:
            self.window += int.from_bytes(self.buf[at:stop], "big") & _MAX_WINDOW
            blocked, self.blocked = self.blocked, []
            for frames, fut, sid in blocked:
                self._send(frames, fut, sid)
        elif kind == _RST_STREAM and stream in self.calls:
            self.calls.pop(stream)[0].set_exception(ConnectionError(f"stream {stream} reset"))
        elif kind == _GOAWAY:
            self.connection_lost(ConnectionError("GOAWAY from the server"))

    def _send(self, frames: bytes, fut: asyncio.Future[bytes], sid: int) -> None:
        size = len(self.data[1])
        if self.window < size:
            self.blocked.append((frames, fut, sid))
            return
        self.window -= size
        self.calls[sid] = (fut, [])
        self.transport.write(frames)

    def connection_lost(self, exc: Exception | None) -> None:
        calls, self.calls = self.calls, {}
        for fut, _ in calls.values():
            if not fut.done():
                fut.set_exception(exc or ConnectionError("closed by the server"))

    def call(self) -> asyncio.Future[bytes]:
        """Start one call; its future is the response's DATA (gRPC-framed message)."""
        sid, self.next_id = self.next_id, self.next_id + 2
        sid_b = sid.to_bytes(4, "big")
        frames = self.head[0] + sid_b + self.head[1] + self.data[0] + sid_b + self.data[1]
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._send(frames, fut, sid)
        return fut


def _infer_ok(cfg: dict[str, Any], answer: bytes) -> bool:
    """Whether a call's DATA is one uncompressed gRPC message holding a ModelInferResponse
    with the expected output tensor (raw FP32 contents)."""
    from tritonclient.grpc import service_pb2

    if len(answer) < 5 or answer[0] != 0 or int.from_bytes(answer[1:5], "big") != len(answer) - 5:
        return False
    resp = service_pb2.ModelInferResponse.FromString(answer[5:])
    out = resp.outputs[0] if resp.outputs else None
    return (
        out is not None
        and out.name == cfg["output"]
        and out.datatype == "FP32"
        and list(out.shape) == list(cfg["output_shape"])
        and len(resp.raw_output_contents[0]) == 4 * int(np.prod(cfg["output_shape"]))
    )


async def _grpc_worker(cfg: dict[str, Any], state: dict[str, Any], conn: _H2Conn) -> None:
    while state["next"] < cfg["requests"]:
        state["next"] += 1
        start = time.perf_counter()
        try:
            ok = _infer_ok(cfg, await conn.call())
        except ConnectionError:
            ok = False
        state["lat"].append(time.perf_counter() - start)
        state["ok" if ok else "failed"] += 1
        if not ok:
            state["statuses"]["grpc-error"] = state["statuses"].get("grpc-error", 0) + 1


async def _grpc_run(cfg: dict[str, Any], message: bytes, state: dict[str, Any]) -> None:
    """``concurrency`` callers in flight over ``grpc_channels`` HTTP/2 connections
    (default one, multiplexing every call, as one tritonclient.grpc client does)."""
    n = max(1, min(int(cfg.get("grpc_channels") or 1), cfg["concurrency"]))
    loop = asyncio.get_running_loop()
    authority = f"{cfg['host']}:{cfg['grpc_port']}"
    conns = []
    for _ in range(n):
        _, conn = await loop.create_connection(
            lambda: _H2Conn(authority, message), cfg["host"], cfg["grpc_port"]
        )
        conns.append(conn)
    try:
        await asyncio.gather(
            *(_grpc_worker(cfg, state, conns[i % n]) for i in range(cfg["concurrency"]))
        )
    finally:
        for c in conns:
            c.transport.close()


def _grpc_request(cfg: dict[str, Any], x: np.ndarray) -> bytes:
    """The ModelInferRequest (raw contents) as a gRPC length-prefixed message."""
    from tritonclient.grpc import service_pb2

    model = cfg["path"].split("/")[3]
    req = service_pb2.ModelInferRequest(model_name=model)
    req.inputs.add(name=cfg["input"], datatype="FP32", shape=list(x.shape))
    req.raw_input_contents.append(x.tobytes())
    body = req.SerializeToString()
    return b"\x00" + len(body).to_bytes(4, "big") + body


async def run(cfg: dict[str, Any]) -> dict[str, Any]:
    x = np.random.default_rng(0).random(cfg["input_shape"], dtype=np.float32)
    state: dict[str, Any] = {"next": 0, "lat": [], "ok": 0, "failed": 0, "statuses": {}}
    state["ssl"] = _client_ssl(cfg)
    if cfg.get("protocol") == "grpc":
        message = _grpc_request(cfg, x)
        t0 = time.perf_counter()
        await _grpc_run(cfg, message, state)
        return _summary(cfg, state, time.perf_counter() - t0, len(message) - 5)
    body, hl = encode_request({cfg["input"]: x}, binary=cfg["binary"], binary_outputs=cfg["binary"])
    head = (
        f"POST {cfg['path']} HTTP/1.1\r\nHost: {cfg['host']}\r\n"
        f"Content-Type: {'application/octet-stream' if hl is not None else 'application/json'}\r\n"
        f"Content-Length: {len(body)}\r\n"
    )
    if hl is not None:
        head += f"Inference-Header-Content-Length: {hl}\r\n"
    req = (head + "\r\n").encode() + body
    t0 = time.perf_counter()
    await asyncio.gather(*(_worker(cfg, req, state, t0) for _ in range(cfg["concurrency"])))
    return _summary(cfg, state, time.perf_counter() - t0, len(body))


def _summary(cfg: dict[str, Any], state: dict[str, Any], wall: float, size: int) -> dict[str, Any]:
    lat = np.array(state["lat"]) * 1000
    return {
        "requests": cfg["requests"],
        "ok": state["ok"],
        "failed": state["failed"],
        "failed_statuses": state["statuses"],
        "wall_s": wall,
        "throughput_per_s": state["ok"] / wall,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "mean_ms": float(lat.mean()),
        "request_bytes": size,
    }


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(run(json.loads(sys.argv[1])))))
