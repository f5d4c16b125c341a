"""Each defect of issue 21's audit of ``edgeintel serve``, reproduced in-process: label
cardinality of /metrics, 500s on odd headers and values, a lost result, the relay of
``--tier cloud``, health bodies, non-finite floats, compressed bodies, /v2 without a
token, error bodies of unrouted requests."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from starlette.testclient import TestClient

from edgeintel.runtime.agent import FORWARD_HEADER, DeviceAgent, DeviceStream
from edgeintel.runtime.auth import Tokens
from edgeintel.runtime.protocol import encode_request
from edgeintel.runtime.repository import ModelRepository, add_model
from edgeintel.runtime.seams import ExecutionTier, StaticPlan
from edgeintel.runtime.server import build_app
from edgeintel.runtime.settings import ServerSettings
from edgeintel.runtime.store import DeviceStore
from edgeintel.runtime.transport import MemoryTransport, Request, Response
from tests.runtime.conftest import sample_digits

DEV = {"Authorization": "Bearer " + "d" * 20}
OP = {"Authorization": "Bearer " + "o" * 20}
TOKENS = Tokens(devices={"cam-0": "d" * 20}, operators={"op": "o" * 20})


def scale_model(path: Path) -> Path:
    """FP32 ``y = x * 1e30`` of shape (batch, 4): finite inputs, infinite outputs."""
    k = helper.make_tensor("k", TensorProto.FLOAT, [], [1e30])
    graph = helper.make_graph(
        [helper.make_node("Mul", ["INPUT0", "k"], ["OUTPUT0"])],
        "scale",
        [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["batch", 4])],
        [k],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def repo(model_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    scale = scale_model(tmp_path_factory.mktemp("scale") / "scale.onnx")
    add_model(model_repo, "scale", scale)
    return model_repo


@pytest.fixture(scope="module")
def client(repo: Path, tmp_path_factory: pytest.TempPathFactory):
    app = build_app(
        ModelRepository(repo),
        ServerSettings(max_request_bytes=64 * 1024),
        tokens=TOKENS,
        sink_path=tmp_path_factory.mktemp("audit") / "sink.db",
        node="edge",
    )
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _infer(datatype: str, data: list, model: str | None = None) -> dict:
    return {
        "inputs": [{"name": "INPUT0", "datatype": datatype, "shape": [1, 4], "data": data}],
        "model": model,
    }


def _post(client, path: str, body: dict | bytes, headers: dict | None = None):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(path, content=content, headers={**DEV, **(headers or {})})


def _error(r) -> str:
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    err = json.loads(r.content)
    assert isinstance(err["error"], str) and err["error"]
    return err["error"]


def test_metrics_labels_come_from_the_repository_not_the_url(client) -> None:
    """401s and 404s with made-up model names add no series; /metrics stays bounded."""

    def burst(seed: int) -> None:
        for i in range(150):
            name = f"m{seed}x{i}"
            client.post(f"/v2/models/{name}/infer", content=b"{}")  # no token: 401
            _post(client, f"/v2/models/{name}/infer", {})  # unknown model: 404
            client.get(f"/v2/models/{name}/versions/{i}/ready", headers=DEV)

    def series(text: str) -> set[str]:
        return {line.rpartition(" ")[0] for line in text.splitlines() if "{" in line}

    burst(0)
    client.get("/metrics", headers=OP)
    first = client.get("/metrics", headers=OP).text
    burst(1)
    second = client.get("/metrics", headers=OP).text
    assert "m0x" not in first and "m1x" not in second
    assert series(second) == series(first)
    assert len(second) < len(first) + 100  # counts grow by digits, not by lines
    assert 'model="",status="401"' in second and 'model="",status="404"' in second


def test_results_device_labels_are_bounded(repo: Path, tmp_path: Path) -> None:
    app = build_app(ModelRepository(repo), sink_path=tmp_path / "s.db")  # auth off
    with TestClient(app) as c:
        for i in range(400):
            rec = {"key": f"k{i}", "seq": i, "t_s": 1.0}
            body = {"device": f"dev-{i}", "records": [rec]}
            assert c.post("/v1/results", json=body).status_code == 200
        text = c.get("/metrics").text
    assert text.count("edgeintel_results_ingested_total{") <= 2 * 257
    assert 'device="_other"' in text


def test_unicode_digit_header_length_is_400(client) -> None:
    body, _ = encode_request({"INPUT0": np.zeros((1, 4), np.float32)})
    # latin-1 0xB2 is '²', which str.isdigit() accepts and int() refuses
    r = client.post(
        "/v2/models/identity_fp32/infer",
        content=body,
        headers={**DEV, "Inference-Header-Content-Length": b"\xb2"},
    )
    assert "Inference-Header-Content-Length" in _error(r)


@pytest.mark.parametrize("seq", [2**63, -(2**63) - 1, 10**30])
def test_results_seq_beyond_64_bits_is_400(client, seq: int) -> None:
    body = {"device": "cam-0", "records": [{"key": "k", "seq": seq, "t_s": 1.0}]}
    assert "seq" in _error(_post(client, "/v1/results", body))


@pytest.mark.parametrize("t_s", ["NaN", "Infinity", "-Infinity", "1e309"])
def test_result_with_non_finite_time_is_refused_not_lost(client, t_s: str) -> None:
    """Refused with 400 (the agent keeps it), never answered as a stored duplicate."""
    key = f"bad-{t_s}"
    record = f'{{"key":"{key}","seq":1,"t_s":{t_s}}}'
    body = f'{{"device":"cam-0","records":[{record}]}}'.encode()
    _error(_post(client, "/v1/results", body))
    assert key not in client.app.state.server.sink.keys("cam-0")
    ok = {"device": "cam-0", "records": [{"key": key, "seq": 1, "t_s": 2.5}]}
    assert _post(client, "/v1/results", ok).json() == {"accepted": 1, "duplicates": 0}


@pytest.mark.parametrize("timeout", ["abc", "inf", "1e309", "nan", "-inf"])
def test_relay_timeout_header_must_be_finite(repo: Path, tmp_path: Path, timeout: str) -> None:
    cloud = MemoryTransport(build_app(ModelRepository(repo), node="cloud"))
    edge = build_app(ModelRepository(repo), node="edge", upstream=cloud, upstream_name="cloud")
    body, hl = encode_request({"INPUT0": np.zeros((1, 4), np.float32)})
    headers = {
        "Inference-Header-Content-Length": str(hl),
        FORWARD_HEADER: "cloud",
        "X-Edgeintel-Timeout-S": timeout,
    }
    with TestClient(edge, raise_server_exceptions=False) as c:
        r = c.post("/v2/models/identity_fp32/infer", content=body, headers=headers)
        assert "Timeout" in _error(r)
        headers["X-Edgeintel-Timeout-S"] = "2.5"
        assert c.post("/v2/models/identity_fp32/infer", content=body, headers=headers).is_success


def test_tier_cloud_sends_the_forward_header(repo: Path, tmp_path: Path) -> None:
    """``edgeintel device --tier cloud``'s plan: the edge server relays it to the cloud."""
    seen: list[dict[str, str]] = []

    def handler(req: Request) -> Response:
        seen.append(req.headers)
        return Response(503, b'{"error": "down"}', {})

    plan = StaticPlan.for_tier("cloud", attach="micro-1", cloud="cloud")
    assert plan.decide().target == "cloud"
    assert StaticPlan.for_tier("edge", "micro-1", "cloud").decide().target == "micro-1"
    with DeviceStore(tmp_path / "d.db") as store:
        agent = DeviceAgent(
            "cam-0",
            DeviceStream(sample_digits(2), np.zeros(2, int), 0.0),
            ModelRepository(repo).get("digits").session,
            store,
            MemoryTransport(handler=handler),
            plan=plan,
            server_node="micro-1",
        )
        agent.infer(agent.stream.inputs[0])
    assert seen and seen[0][FORWARD_HEADER] == "cloud"
    assert StaticPlan.for_tier("device", "micro-1", "cloud").tier is ExecutionTier.DEVICE


def test_health_bodies_for_kserve_and_triton_clients(client) -> None:
    live = client.get("/v2/health/live")
    assert live.status_code == 200 and live.json() == {"live": True}
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 200 and ready.json() == {"ready": True}
    r = client.get("/v2/models/identity_fp32/ready", headers=DEV)
    assert r.json() == {"name": "identity_fp32", "ready": True}


@pytest.mark.parametrize(
    "datatype,data",
    [
        ("FP16", [1e6, 0, 0, 0]),  # overflows FP16
        ("FP32", [1e39, 0, 0, 0]),  # overflows FP32
        ("FP64", [1e308 * 10, 0, 0, 0]),  # json.dumps writes Infinity
        ("FP32", [float("nan"), 0, 0, 0]),  # json.dumps writes NaN
    ],
)
def test_non_finite_inputs_are_400(client, datatype: str, data: list) -> None:
    body = json.dumps(_infer(datatype, data)).encode()
    r = _post(client, f"/v2/models/identity_{datatype.lower()}/infer", body)
    msg = _error(r)
    assert "non-finite" in msg or "not valid JSON" in msg


def test_binary_nan_input_is_400(client) -> None:
    body, hl = encode_request({"INPUT0": np.array([[np.nan, 0, 0, 0]], np.float32)})
    r = _post(
        client,
        "/v2/models/identity_fp32/infer",
        body,
        {"Inference-Header-Content-Length": str(hl)},
    )
    assert "non-finite" in _error(r)


def test_non_finite_outputs_never_emitted_as_json(client) -> None:
    body = json.dumps(_infer("FP32", [1e10, 1, 0, -1e10])).encode()
    r = _post(client, "/v2/models/scale/infer", body)
    assert "binary_data" in _error(r)
    # asked as binary, the infinities come back as IEEE bytes
    x = np.array([[1e10, 1, 0, -1e10]], np.float32)
    body, hl = encode_request({"INPUT0": x}, binary_outputs=True)
    r = _post(client, "/v2/models/scale/infer", body, {"Inference-Header-Content-Length": str(hl)})
    assert r.status_code == 200
    n = int(r.headers["inference-header-content-length"])
    json.loads(r.content[:n], parse_constant=lambda c: pytest.fail(c))
    out = np.frombuffer(r.content[n:], np.float32)
    assert np.isinf(out[0]) and out[1] == np.float32(1e30) and np.isneginf(out[3])


def _raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-15)
    return c.compress(data) + c.flush()


def test_compressed_request_bodies(client) -> None:
    body = json.dumps(_infer("FP32", [1.0, 2.0, 3.0, 4.0])).encode()
    want = _post(client, "/v2/models/identity_fp32/infer", body).json()
    for enc, packed in [
        ("gzip", gzip.compress(body)),
        ("deflate", zlib.compress(body)),
        ("deflate", _raw_deflate(body)),
    ]:
        r = _post(client, "/v2/models/identity_fp32/infer", packed, {"Content-Encoding": enc})
        assert r.status_code == 200, r.text
        assert r.json() == want
    bomb = gzip.compress(b" " * (10 * 1024 * 1024))  # 10 MiB of spaces, 10 KiB packed
    r = _post(client, "/v2/models/identity_fp32/infer", bomb, {"Content-Encoding": "gzip"})
    assert r.status_code == 413 and _error(r)
    r = _post(client, "/v2/models/identity_fp32/infer", b"nope", {"Content-Encoding": "gzip"})
    assert "gzip" in _error(r)
    r = _post(client, "/v2/models/identity_fp32/infer", body, {"Content-Encoding": "br"})
    assert r.status_code == 415 and _error(r)


def test_literal_nan_in_json_is_400(client) -> None:
    body = b'{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1,4],"data":[NaN,0,0,0]}]}'
    assert "NaN" in _error(_post(client, "/v2/models/identity_fp32/infer", body))


def test_v2_needs_a_token_like_every_endpoint_but_health(client) -> None:
    assert client.get("/v2").status_code == 401
    assert client.get("/v2", headers=DEV).json()["name"] == "edgeintel"
    assert client.get("/v2", headers=OP).status_code == 200
    for path in ("/v2/health/live", "/v2/health/ready"):
        assert client.get(path).status_code == 200
    for method, path in [
        ("GET", "/v2/models/identity_fp32"),
        ("GET", "/v2/models/identity_fp32/config"),
        ("GET", "/v2/models/stats"),
        ("POST", "/v2/repository/index"),
        ("POST", "/v2/models/identity_fp32/infer"),
        ("POST", "/v1/results"),
    ]:
        assert client.request(method, path).status_code == 401, path


def test_unrouted_requests_answer_v2_errors(client) -> None:
    assert _error(client.get("/nope")) and client.get("/nope").status_code == 404
    r = client.get("/v2/models/identity_fp32/infer", headers=DEV)
    assert r.status_code == 405 and _error(r)
