"""Off-the-shelf clients against a real ``edgeintel serve`` process (HTTP and gRPC ports,
tokens on): tritonclient's HTTP and gRPC APIs (health, metadata, config, infer JSON and
binary, streaming, statistics, repository index/load/unload), gRPC errors and auth, and
the connection-level defences (slow bodies closed after the timeout, client disconnects
not counted as server errors, odd header bytes answered 400)."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc
from tritonclient.utils import InferenceServerException

from tests.runtime.conftest import ServerProcess, free_port, sample_digits

DEV_TOKEN = "d" * 20
OP_TOKEN = "o" * 20
DEV = {  # tritonclient adds headers to the dict it is given: pass copies
    "Authorization": f"Bearer {DEV_TOKEN}"
}
OP = {"Authorization": f"Bearer {OP_TOKEN}"}
GDEV = {"authorization": f"Bearer {DEV_TOKEN}"}  # gRPC metadata keys are lowercase
GOP = {"authorization": f"Bearer {OP_TOKEN}"}


@pytest.fixture(scope="module")
def node(model_repo: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("clients")
    tokens = tmp / "tokens.json"
    tokens.write_text(json.dumps({"devices": {"cam-0": DEV_TOKEN}, "operators": {"op": OP_TOKEN}}))
    grpc_port = free_port()
    srv = ServerProcess(
        model_repo,
        tmp,
        "--tokens",
        str(tokens),
        "--sink",
        str(tmp / "sink.db"),
        "--grpc-port",
        str(grpc_port),
        "--body-timeout-s",
        "1",
    )
    srv.grpc_url = f"127.0.0.1:{grpc_port}"  # type: ignore[attr-defined]
    # health is open, so the fixture's readiness poll works with tokens on
    try:
        yield srv.start()
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def http(node: ServerProcess):
    c = httpclient.InferenceServerClient(node.url, network_timeout=30)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def grpc_client(node: ServerProcess):
    c = grpcclient.InferenceServerClient(node.grpc_url)  # type: ignore[attr-defined]
    try:
        yield c
    finally:
        c.close()


def _want(model_repo: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(model_repo / "digits" / "2" / "model.onnx"))
    return sess.run(None, {"input": x})[0]  # type: ignore[no-any-return]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_http_whole_api(http, model_repo: Path, binary: bool) -> None:
    assert http.is_server_live() and http.is_server_ready()
    assert "statistics" in http.get_server_metadata(headers=dict(DEV))["extensions"]
    meta = http.get_model_metadata("digits", headers=dict(DEV))
    assert meta["versions"] == ["1", "2"]
    cfg = http.get_model_config("digits", headers=dict(DEV))
    assert cfg["input"] == [{"name": "input", "data_type": "TYPE_FP32", "dims": [1, 8, 8]}]
    assert cfg["max_batch_size"] == 32 and cfg["platform"] == "onnxruntime_onnx"
    assert http.is_model_ready("digits", headers=dict(DEV))
    before = http.get_inference_statistics("digits", "2", headers=dict(DEV))["model_stats"][0]
    x = sample_digits(3)
    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    out = httpclient.InferRequestedOutput("logits", binary_data=binary)
    res = http.infer("digits", [inp], outputs=[out], headers=dict(DEV))
    np.testing.assert_allclose(res.as_numpy("logits"), _want(model_repo, x), rtol=1e-5, atol=1e-6)
    after = http.get_inference_statistics("digits", "2", headers=dict(DEV))["model_stats"][0]
    assert after["inference_count"] == before["inference_count"] + 3
    assert after["inference_stats"]["success"]["count"] == (
        before["inference_stats"]["success"]["count"] + 1
    )
    assert after["inference_stats"]["compute_infer"]["ns"] > 0
    everything = http.get_inference_statistics(headers=dict(DEV))["model_stats"]
    assert {s["name"] for s in everything} >= {"digits", "identity_fp32"}
    with pytest.raises(InferenceServerException):
        http.get_model_config("digits")  # no token


def test_tritonclient_http_repository_index_load_unload(http) -> None:
    index = http.get_model_repository_index(headers=dict(DEV))
    assert {"name": "identity_int8", "version": "1", "state": "READY", "reason": ""} in index
    with pytest.raises(InferenceServerException, match="operator"):
        http.unload_model("identity_int8", headers=dict(DEV))
    http.unload_model("identity_int8", headers=dict(OP))
    assert not http.is_model_ready("identity_int8", headers=dict(DEV))
    states = {(m["name"], m["state"]) for m in http.get_model_repository_index(headers=dict(DEV))}
    assert ("identity_int8", "UNAVAILABLE") in states
    http.load_model("identity_int8", headers=dict(OP))
    assert http.is_model_ready("identity_int8", headers=dict(DEV))
    with pytest.raises(InferenceServerException, match="nope"):
        http.load_model("nope", headers=dict(OP))


@pytest.mark.parametrize("datatype", ["FP32", "FP16", "INT64", "BYTES", "BOOL"])
def test_tritonclient_grpc_whole_api(grpc_client, datatype: str) -> None:
    g = grpc_client
    assert g.is_server_live() and g.is_server_ready()
    assert "model_repository" in g.get_server_metadata(headers=dict(GDEV)).extensions
    name = f"identity_{datatype.lower()}"
    assert g.is_model_ready(name, headers=dict(GDEV))
    assert g.get_model_metadata(name, headers=dict(GDEV)).inputs[0].datatype == datatype
    cfg = g.get_model_config(name, headers=dict(GDEV), as_json=True)["config"]
    assert cfg["input"][0]["dims"] == ["4"]
    rng = np.random.default_rng(3)
    x: np.ndarray
    if datatype == "BYTES":
        x = np.array([f"é{i}".encode() for i in range(8)], dtype=object).reshape(2, 4)
    elif datatype == "BOOL":
        x = rng.random((2, 4)) > 0.5
    else:
        x = (rng.standard_normal((2, 4)) * 50).astype(datatype.lower().replace("fp", "float"))
    inp = grpcclient.InferInput("INPUT0", list(x.shape), datatype)
    inp.set_data_from_numpy(x)
    res = g.infer(name, [inp], request_id="g1", headers=dict(GDEV))
    got = res.as_numpy("OUTPUT0")
    assert res.get_response().id == "g1"
    np.testing.assert_array_equal(got, x)
    stats = g.get_inference_statistics(name, headers=dict(GDEV), as_json=True)["model_stats"][0]
    assert int(stats["inference_count"]) >= 2
    index = g.get_model_repository_index(headers=dict(GDEV), as_json=True)["models"]
    assert {"name": name, "version": "1", "state": "READY"} in index


def test_tritonclient_grpc_stream_and_repository(grpc_client) -> None:
    g = grpc_client
    results: list[tuple[object, object]] = []
    g.start_stream(lambda result, error: results.append((result, error)), headers=dict(GDEV))
    for i in range(4):
        inp = grpcclient.InferInput("INPUT0", [1, 4], "FP32")
        inp.set_data_from_numpy(np.full((1, 4), i, np.float32))
        g.async_stream_infer("identity_fp32", [inp], request_id=str(i))
    bad = grpcclient.InferInput("INPUT0", [1, 4], "FP64")
    bad.set_data_from_numpy(np.zeros((1, 4)))
    g.async_stream_infer("identity_fp32", [bad], request_id="bad")
    deadline = time.monotonic() + 10
    while len(results) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    g.stop_stream()
    ok = [r for r, e in results if e is None]
    assert sorted(int(r.get_response().id) for r in ok) == [0, 1, 2, 3]
    assert any(e is not None for _, e in results)
    with pytest.raises(InferenceServerException, match="UNAUTHENTICATED"):
        g.unload_model("identity_int16", headers=dict(GDEV))
    g.unload_model("identity_int16", headers=dict(GOP))
    assert not g.is_model_ready("identity_int16", headers=dict(GDEV))
    g.load_model("identity_int16", headers=dict(GOP))
    assert g.is_model_ready("identity_int16", headers=dict(GDEV))


def test_grpc_typed_contents_errors_and_auth(node: ServerProcess) -> None:
    with grpc.insecure_channel(node.grpc_url) as ch:  # type: ignore[attr-defined]
        stub = pb_grpc.GRPCInferenceServiceStub(ch)
        md = (("authorization", f"Bearer {DEV_TOKEN}"),)
        req = pb.ModelInferRequest(model_name="identity_int32")
        t = req.inputs.add(name="INPUT0", datatype="INT32", shape=[1, 4])
        t.contents.int_contents.extend([1, -2, 3, 2**31 - 1])
        resp = stub.ModelInfer(req, metadata=md)
        got = np.frombuffer(resp.raw_output_contents[0], "<i4")
        assert got.tolist() == [1, -2, 3, 2**31 - 1]
        for bad, code in [
            (pb.ModelInferRequest(model_name="nope"), grpc.StatusCode.NOT_FOUND),
            (pb.ModelInferRequest(model_name="identity_int32"), grpc.StatusCode.INVALID_ARGUMENT),
        ]:
            with pytest.raises(grpc.RpcError) as err:
                stub.ModelInfer(bad, metadata=md)
            assert err.value.code() == code
        with pytest.raises(grpc.RpcError) as err:
            stub.ModelInfer(req)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        nan = pb.ModelInferRequest(model_name="identity_fp32")
        t = nan.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 4])
        t.contents.fp32_contents.extend([float("nan"), 0, 0, 0])
        with pytest.raises(grpc.RpcError) as err:
            stub.ModelInfer(nan, metadata=md)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert stub.ServerLive(pb.ServerLiveRequest()).live


def _metrics(node: ServerProcess) -> str:
    return httpx.get(f"http://{node.url}/metrics", headers=dict(OP)).text


def _open(node: ServerProcess, head: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", node.port))
    s.sendall(head)
    return s


def test_slow_bodies_are_closed_after_the_timeout(node: ServerProcess) -> None:
    """500 connections that send headers and half a body: each is answered 408 and
    closed once ``--body-timeout-s`` (1 s) passes; the node keeps serving."""
    head = (
        b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + DEV_TOKEN.encode()
        + b"\r\nContent-Length: 1000\r\n\r\n"
        + b"{" * 500
    )
    socks = [_open(node, head) for _ in range(500)]
    t0 = time.monotonic()
    closed = 0
    statuses: set[bytes] = set()
    for s in socks:
        s.settimeout(max(0.1, 8.0 - (time.monotonic() - t0)))
        data = b""
        try:
            while chunk := s.recv(4096):
                data += chunk
            closed += 1
        except (TimeoutError, ConnectionResetError):
            pass
        statuses.add(data[:12])
        s.close()
    assert closed == 500
    assert statuses == {b"HTTP/1.1 408"}
    assert time.monotonic() - t0 < 8.0
    assert httpx.get(f"http://{node.url}/v2/health/ready").status_code == 200
    assert 'status="408"' in _metrics(node)


def test_client_disconnects_are_not_server_errors(node: ServerProcess) -> None:
    head = (
        b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + DEV_TOKEN.encode()
        + b"\r\nContent-Length: 5000\r\n\r\n"
        + b"{" * 100
    )
    for _ in range(20):
        s = _open(node, head)
        time.sleep(0.01)
        s.close()
    time.sleep(0.5)
    text = _metrics(node)
    assert not any('status="5' in line for line in text.splitlines() if "requests_total" in line)


def test_unicode_digit_in_header_length_is_400(node: ServerProcess) -> None:
    """Latin-1 byte 0xB2 decodes to '²', which ``str.isdigit`` accepts (a 500 before)."""
    body = b'{"inputs":[]}'
    s = _open(
        node,
        b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + DEV_TOKEN.encode()
        + b"\r\nInference-Header-Content-Length: \xb2\r\nConnection: close\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body,
    )
    s.settimeout(10)
    data = b""
    while chunk := s.recv(4096):
        data += chunk
    s.close()
    assert data.startswith(b"HTTP/1.1 400"), data[:200]
    assert b"Inference-Header-Content-Length" in data


def test_connection_limit_refuses_beyond_max_connections(model_repo: Path, tmp_path: Path) -> None:
    """Beyond ``--max-connections`` a new request is answered 503 at once (not queued
    behind slow clients); once the slow bodies time out the node serves again."""
    srv = ServerProcess(
        model_repo, tmp_path, "--max-connections", "16", "--body-timeout-s", "2"
    ).start()
    try:
        head = b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
        socks = [_open(srv, head) for _ in range(32)]
        time.sleep(0.3)
        t0 = time.monotonic()
        r = httpx.get(f"http://{srv.url}/v2/models/digits", timeout=10)
        assert r.status_code == 503 and time.monotonic() - t0 < 1.5
        for s in socks:
            s.settimeout(10)
            while s.recv(4096):
                pass
            s.close()
        assert httpx.get(f"http://{srv.url}/v2/models/digits", timeout=10).status_code == 200
    finally:
        srv.stop()


def test_busy_grpc_port_is_one_line(model_repo: Path) -> None:
    import subprocess
    import sys

    from tests.runtime.conftest import ROOT

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run(
            [
                *(sys.executable, "-m", "edgeintel", "serve", str(model_repo)),
                *("--port", str(free_port()), "--grpc-port", str(port)),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=dict(os.environ, PYTHONPATH=str(ROOT / "src")),
        )
    assert r.returncode == 2
    assert f"--grpc-port {port}" in r.stderr + r.stdout and "Traceback" not in r.stderr


def test_grpc_calls_in_flight_share_batches_and_stray_methods_are_unimplemented(
    node: ServerProcess,
) -> None:
    """The gRPC face (HTTP/2 on the HTTP event loop, runtime.grpc_server): 32 calls at
    once all answered, through the shared batcher (fewer
    ONNX Runtime calls than requests); a method the server does not implement is
    UNIMPLEMENTED, a stream without a token UNAUTHENTICATED, neither an internal error."""
    from concurrent.futures import ThreadPoolExecutor

    def batches() -> float:
        text = httpx.get(
            f"http://{node.url}/metrics", headers={"Authorization": f"Bearer {OP_TOKEN}"}
        ).text
        line = [x for x in text.splitlines() if x.startswith("edgeintel_batch_size_count")]
        return sum(float(x.rsplit(" ", 1)[1]) for x in line)

    with grpc.insecure_channel(node.grpc_url) as ch:  # type: ignore[attr-defined]
        stub = pb_grpc.GRPCInferenceServiceStub(ch)
        x = sample_digits(1)
        req = pb.ModelInferRequest(model_name="digits")
        req.inputs.add(name="input", datatype="FP32", shape=list(x.shape))
        req.raw_input_contents.append(x.tobytes())
        before = batches()
        with ThreadPoolExecutor(32) as pool:
            calls = [pool.submit(stub.ModelInfer, req, metadata=GDEV.items()) for _ in range(96)]
            answers = [c.result() for c in calls]
        assert len(answers) == 96 and all(len(a.raw_output_contents[0]) == 40 for a in answers)
        assert batches() - before < 96
        with pytest.raises(grpc.RpcError) as err:
            stub.TraceSetting(pb.TraceSettingRequest(), metadata=GDEV.items())
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with pytest.raises(grpc.RpcError) as err:
            list(stub.ModelStreamInfer(iter([req])))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
