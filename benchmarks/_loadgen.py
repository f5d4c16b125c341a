"""Load generator for bench_serve: many concurrent keep-alive HTTP/1.1 clients on asyncio
(one buffered protocol per connection: the transport reads, and under TLS decrypts, into
the connection's buffer, with no allocation per read).

Run as its own process (``python benchmarks/_loadgen.py '<json config>'``) so that the
clients do not share the server's interpreter; prints one JSON object. Every 200 response
is decoded with the protocol's decoder and checked (output name, shape, datatype); any
other status or an undecodable body counts as a failure.

With ``"protocol": "grpc"`` the clients are grpc.aio calls of ``ModelInfer`` (raw tensor
contents) on ``grpc_port``, one channel per client; outputs are checked the same way.

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


class _Conn(asyncio.BufferedProtocol):
    """One keep-alive HTTP/1.1 client connection: the transport reads into this buffer
    (no allocation per read, under TLS too) and a response is complete when its
    Content-Length bytes are in."""

    def __init__(self) -> None:
        self.buf = bytearray(1 << 16)
        self.view = memoryview(self.buf)
        self.n = 0  # bytes in buf
        self.waiter: asyncio.Future[tuple[int, dict[bytes, bytes], bytes]] | None = None
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.n == len(self.buf):
            self.buf.extend(bytes(len(self.buf)))
            self.view = memoryview(self.buf)
        return self.view[self.n :]

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


async def _grpc_worker(cfg: dict[str, Any], req: Any, state: dict[str, Any], stub: Any) -> None:
    import grpc

    while state["next"] < cfg["requests"]:
        state["next"] += 1
        start = time.perf_counter()
        ok = True
        try:
            resp = await stub.ModelInfer(req)
            arr = np.frombuffer(resp.raw_output_contents[0], np.float32)
            ok = arr.size == int(np.prod(cfg["output_shape"]))
        except grpc.aio.AioRpcError as exc:
            ok = False
            code = str(exc.code())
            state["statuses"][code] = state["statuses"].get(code, 0) + 1
        state["lat"].append(time.perf_counter() - start)
        state["ok" if ok else "failed"] += 1


async def _grpc_run(cfg: dict[str, Any], req: Any, state: dict[str, Any]) -> None:
    """``concurrency`` callers in flight over ``grpc_channels`` channels (default one,
    its HTTP/2 connection multiplexing every call, as one tritonclient.grpc client)."""
    import grpc
    from tritonclient.grpc import service_pb2_grpc

    target = f"{cfg['host']}:{cfg['grpc_port']}"
    n = max(1, min(int(cfg.get("grpc_channels") or 1), cfg["concurrency"]))
    channels = [grpc.aio.insecure_channel(target) for _ in range(n)]
    stubs = [service_pb2_grpc.GRPCInferenceServiceStub(c) for c in channels]
    try:
        await asyncio.gather(
            *(_grpc_worker(cfg, req, state, stubs[i % n]) for i in range(cfg["concurrency"]))
        )
    finally:
        for c in channels:
            await c.close()


def _grpc_request(cfg: dict[str, Any], x: np.ndarray) -> tuple[Any, int]:
    from tritonclient.grpc import service_pb2

    model = cfg["path"].split("/")[3]
    req = service_pb2.ModelInferRequest(model_name=model)
    req.inputs.add(name=cfg["input"], datatype="FP32", shape=list(x.shape))
    req.raw_input_contents.append(x.tobytes())
    return req, req.ByteSize()


async def run(cfg: dict[str, Any]) -> dict[str, Any]:
    x = np.random.default_rng(0).random(cfg["input_shape"], dtype=np.float32)
    state: dict[str, Any] = {"next": 0, "lat": [], "ok": 0, "failed": 0, "statuses": {}}
    state["ssl"] = _client_ssl(cfg)
    if cfg.get("protocol") == "grpc":
        greq, size = _grpc_request(cfg, x)
        t0 = time.perf_counter()
        await _grpc_run(cfg, greq, state)
        return _summary(cfg, state, time.perf_counter() - t0, size)
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
