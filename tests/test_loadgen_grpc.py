"""The serving benchmark's HTTP/2 gRPC client (benchmarks/_loadgen.py) against grpcio's
server: every answer decoded and checked, failed calls counted, flow control kept
(the requests sent exceed HTTP/2's initial 64 KiB connection window)."""

from __future__ import annotations

import asyncio
import importlib.util
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[1]


def _loadgen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_loadgen", ROOT / "benchmarks" / "_loadgen.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _Servicer(pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """Answers ``digits`` with ten FP32 logits (the input's sum); other models NOT_FOUND."""

    def ModelInfer(self, request: Any, context: grpc.ServicerContext) -> Any:
        if request.model_name != "digits":
            context.abort(grpc.StatusCode.NOT_FOUND, "no such model")
        x = np.frombuffer(request.raw_input_contents[0], np.float32)
        resp = pb.ModelInferResponse(model_name="digits", model_version="1")
        resp.outputs.add(name="logits", datatype="FP32", shape=[1, 10])
        resp.raw_output_contents.append(np.full(10, x.sum(), np.float32).tobytes())
        return resp


@pytest.fixture(scope="module")
def grpc_port():
    server = grpc.server(ThreadPoolExecutor(4))
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(_Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port
    server.stop(None)


def _run(cfg: dict[str, Any]) -> dict[str, Any]:
    """One load generator run, bounded (a flow-control stall fails instead of hanging)."""
    return asyncio.run(asyncio.wait_for(_loadgen().run(cfg), 30))


def _cfg(port: int, **over: Any) -> dict[str, Any]:
    cfg = {
        "host": "127.0.0.1",
        "port": 0,
        "grpc_port": port,
        "protocol": "grpc",
        "path": "/v2/models/digits/infer",
        "input": "input",
        "input_shape": [1, 1, 8, 8],
        "output": "logits",
        "output_shape": [1, 10],
        "binary": True,
        "requests": 400,
        "concurrency": 16,
        "rate": None,
    }
    cfg.update(over)
    return cfg


@pytest.mark.parametrize("connections", [1, 4])
def test_every_call_answered_and_checked(grpc_port: int, connections: int) -> None:
    out = _run(_cfg(grpc_port, grpc_channels=connections))
    assert (out["ok"], out["failed"]) == (400, 0)
    assert 400 * out["request_bytes"] > 65_535  # past the initial connection window


@pytest.mark.parametrize(
    "over",
    [{"path": "/v2/models/nope/infer"}, {"output": "probs"}, {"output_shape": [1, 11]}],
)
def test_failed_or_wrong_answers_are_counted(grpc_port: int, over: dict[str, Any]) -> None:
    out = _run(_cfg(grpc_port, requests=50, **over))
    assert (out["ok"], out["failed"]) == (0, 50)
