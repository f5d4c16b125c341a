"""Conformance of ``edgeintel serve`` with an off-the-shelf client (tritonclient[http])
against a real server process on loopback: health, metadata, readiness, inference in JSON
and binary for every datatype of the spec, errors as {"error": ...} with 4xx."""

from __future__ import annotations

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.runtime.conftest import ONNX_TYPES, ServerProcess, sample_digits


@pytest.fixture(scope="module")
def client(server: ServerProcess):
    c = httpclient.InferenceServerClient(server.url, connection_timeout=10, network_timeout=30)
    try:
        yield c
    finally:
        c.close()


def test_health_and_server_metadata(client) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "edgeintel"
    assert "binary_tensor_data" in meta["extensions"]


def test_model_metadata_and_ready_with_and_without_version(client) -> None:
    meta = client.get_model_metadata("digits")
    assert meta["versions"] == ["1", "2"]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
    assert meta["outputs"][0]["name"] == "logits"
    assert client.get_model_metadata("digits", "1")["name"] == "digits"
    assert client.is_model_ready("digits")
    assert client.is_model_ready("digits", "2")
    assert not client.is_model_ready("digits", "3")
    assert not client.is_model_ready("nope")


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_digits_infer_matches_onnxruntime(client, model_repo, binary: bool) -> None:
    x = sample_digits(5)
    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    out = httpclient.InferRequestedOutput("logits", binary_data=binary)
    res = client.infer("digits", [inp], outputs=[out], request_id="r1")
    got = res.as_numpy("logits")
    sess = ort.InferenceSession(str(model_repo / "digits" / "1" / "model.onnx"))
    want = sess.run(None, {"input": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert res.get_response()["id"] == "r1"


def _values(datatype: str, rng: np.random.Generator) -> np.ndarray:
    shape = (3, 4)
    if datatype == "BOOL":
        return rng.random(shape) > 0.5
    if datatype == "BYTES":
        return np.array([f"s{i}-é" for i in range(12)], dtype=object).reshape(shape)
    dt = {
        "FP16": np.float16,
        "FP32": np.float32,
        "FP64": np.float64,
    }.get(datatype)
    if dt is not None:
        return (rng.standard_normal(shape) * 100).astype(dt)
    info = np.iinfo(np.dtype(datatype.lower().replace("uint", "uint").replace("int", "int")))
    return rng.integers(info.min, info.max, size=shape, dtype=info.dtype, endpoint=True)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("datatype", list(ONNX_TYPES))
def test_every_datatype_round_trips(client, datatype: str, binary: bool) -> None:
    if datatype == "FP16" and not binary:
        pytest.skip("tritonclient cannot send FP16 as JSON (the spec allows it; see next test)")
    x = _values(datatype, np.random.default_rng(1))
    inp = httpclient.InferInput("INPUT0", list(x.shape), datatype)
    inp.set_data_from_numpy(x, binary_data=binary)
    out = httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary)
    res = client.infer(f"identity_{datatype.lower()}", [inp], outputs=[out])
    got = res.as_numpy("OUTPUT0")
    if datatype == "BYTES":
        assert [v.decode() if isinstance(v, bytes) else v for v in got.reshape(-1)] == list(
            x.reshape(-1)
        )
    else:
        assert got.dtype == x.dtype
        np.testing.assert_array_equal(got, x)


def test_fp16_as_json_with_plain_http(server: ServerProcess) -> None:
    body = {
        "inputs": [
            {
                "name": "INPUT0",
                "datatype": "FP16",
                "shape": [1, 4],
                "data": [0.5, -1.0, 2.0, 65504.0],
            }
        ]
    }
    r = httpx.post(f"http://{server.url}/v2/models/identity_fp16/infer", json=body)
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    assert out["datatype"] == "FP16" and out["data"] == [0.5, -1.0, 2.0, 65504.0]


def test_errors_are_json_with_4xx(client, server: ServerProcess) -> None:
    base = f"http://{server.url}"
    cases = [
        ("post", "/v2/models/nope/infer", {"inputs": []}, 404),
        ("post", "/v2/models/digits/versions/9/infer", {"inputs": []}, 404),
        ("post", "/v2/models/digits/infer", {"inputs": []}, 400),
        (
            "post",
            "/v2/models/digits/infer",
            {
                "inputs": [
                    {"name": "input", "datatype": "INT64", "shape": [1, 1, 8, 8], "data": [0] * 64}
                ]
            },
            400,
        ),
        (
            "post",
            "/v2/models/digits/infer",
            {
                "inputs": [
                    {"name": "input", "datatype": "FP32", "shape": [1, 1, 8, 8], "data": [0.0] * 63}
                ]
            },
            400,
        ),
        (
            "post",
            "/v2/models/digits/infer",
            {
                "inputs": [
                    {"name": "input", "datatype": "FP32", "shape": [1, 1, 4, 4], "data": [0.0] * 16}
                ]
            },
            400,
        ),
        ("get", "/v2/models/nope", None, 404),
        ("get", "/v2/nowhere", None, 404),
    ]
    for method, path, body, status in cases:
        r = httpx.request(method, base + path, json=body)
        assert r.status_code == status, (path, r.text)
        assert isinstance(r.json()["error"], str) and r.json()["error"]
    with pytest.raises(InferenceServerException, match="datatype"):
        inp = httpclient.InferInput("input", [1, 1, 8, 8], "FP64")
        inp.set_data_from_numpy(np.zeros((1, 1, 8, 8)), binary_data=True)
        client.infer("digits", [inp])


def test_bad_binary_header_is_400(server: ServerProcess) -> None:
    head = (
        b'{"inputs":[{"name":"input","datatype":"FP32","shape":[1,1,8,8],'
        b'"parameters":{"binary_data_size":256}}]}'
    )
    url = f"http://{server.url}/v2/models/digits/infer"
    for header_len, tail in [
        (len(head) + 10, b"\0" * 256),
        (len(head), b"\0" * 100),
        (len(head), b"\0" * 300),
        ("x", b""),
    ]:
        r = httpx.post(
            url, content=head + tail, headers={"Inference-Header-Content-Length": str(header_len)}
        )
        assert r.status_code == 400, r.text
        assert "error" in r.json()
