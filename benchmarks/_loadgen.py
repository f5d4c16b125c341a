"""Load generator for bench_serve: many concurrent keep-alive HTTP/1.1 clients on asyncio.

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


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    """A ``Transfer-Encoding: chunked`` body (uvicorn streams KServe's and MLServer's)."""
    parts = []
    while True:
        size = int((await reader.readline()).split(b";")[0], 16)
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b""):
                pass  # trailers
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readline()


async def _worker(cfg: dict[str, Any], req: bytes, state: dict[str, Any], t0: float) -> None:
    ctx = state["ssl"]
    reader, writer = await asyncio.open_connection(
        cfg["host"], cfg["port"], ssl=ctx, server_hostname=cfg["host"] if ctx else None
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
            writer.write(req)
            status_line = await reader.readline()
            headers: dict[bytes, bytes] = {}
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                k, _, v = line.partition(b":")
                headers[k.strip().lower()] = v.strip()
            if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
                body = await _read_chunked(reader)
            else:
                body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
            state["lat"].append(time.perf_counter() - start)
            status = int(status_line.split()[1]) if status_line else 0
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
        writer.close()


async def _grpc_worker(cfg: dict[str, Any], req: Any, state: dict[str, Any]) -> None:
    import grpc
    from tritonclient.grpc import service_pb2_grpc

    async with grpc.aio.insecure_channel(f"{cfg['host']}:{cfg['grpc_port']}") as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
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
        await asyncio.gather(*(_grpc_worker(cfg, greq, state) for _ in range(cfg["concurrency"])))
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
