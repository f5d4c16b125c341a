"""Property-based fuzzing of every endpoint (hypothesis): malformed JSON, wrong datatypes,
shape and data-length mismatches, unknown models and versions, huge or empty bodies, bad
binary headers. The server must answer every one with a non-5xx status and, for errors,
a JSON {"error": str} body."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeintel.runtime.protocol import DATATYPES
from edgeintel.runtime.repository import ModelRepository
from edgeintel.runtime.server import build_app
from edgeintel.runtime.settings import ServerSettings
from edgeintel.runtime.transport import MemoryTransport, Request

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def transport(model_repo: Path, tmp_path_factory: pytest.TempPathFactory):
    app = build_app(
        ModelRepository(model_repo),
        ServerSettings(max_request_bytes=64 * 1024),
        sink_path=tmp_path_factory.mktemp("fuzz") / "sink.db",
    )
    t = MemoryTransport(app)
    try:
        yield t
    finally:
        t.close()


def _check(t: MemoryTransport, req: Request) -> int:
    r = t.send(req)
    assert r.status < 500, (req.path, r.status, r.body[:300])
    if r.status >= 400:
        err = json.loads(r.body)
        assert isinstance(err.get("error"), str) and err["error"]
    return r.status


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=8), c, max_size=5),
    max_leaves=30,
)
models = st.sampled_from(["digits", "identity_bytes", "identity_fp16", "identity_bool", "nope"])
datatypes = st.sampled_from([*DATATYPES, "FP8", "", "fp32"]) | st.text(max_size=6)
shapes = st.lists(st.integers(-3, 70), max_size=5) | json_values
tensor = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["input", "INPUT0", "x"]) | st.text(max_size=5),
        "datatype": datatypes,
        "shape": shapes,
    },
    optional={
        "data": json_values | st.lists(st.integers() | st.floats(allow_nan=False), max_size=80),
        "parameters": st.fixed_dictionaries({"binary_data_size": st.integers(-5, 600)})
        | json_values,
    },
)
bodies = st.fixed_dictionaries(
    {"inputs": st.lists(tensor, max_size=3) | json_values},
    optional={
        "outputs": st.lists(st.fixed_dictionaries({"name": st.text(max_size=8)}), max_size=2)
        | json_values,
        "parameters": json_values,
        "id": json_values,
    },
)


@FUZZ
@given(
    model=models, body=bodies, tail=st.binary(max_size=300), hl=st.integers(-5, 2000) | st.none()
)
def test_infer_never_5xx(transport, model: str, body: dict, tail: bytes, hl: int | None) -> None:
    head = json.dumps(body).encode()
    headers = {} if hl is None else {"Inference-Header-Content-Length": str(hl)}
    payload = head + tail if hl is not None else head
    _check(transport, Request("POST", f"/v2/models/{model}/infer", payload, headers))


@FUZZ
@given(raw=st.binary(max_size=400), hl=st.text(max_size=6))
def test_raw_bytes_and_bad_headers_never_5xx(transport, raw: bytes, hl: str) -> None:
    headers = {"Inference-Header-Content-Length": hl} if hl.isascii() and hl.isprintable() else {}
    _check(transport, Request("POST", "/v2/models/digits/infer", raw, headers))


@FUZZ
@given(
    name=st.text(alphabet=st.characters(min_codepoint=48, max_codepoint=122), max_size=12),
    version=st.text(alphabet="0123456789abc-", max_size=5),
    suffix=st.sampled_from(["", "/ready", "/infer"]),
)
def test_unknown_models_and_versions(transport, name: str, version: str, suffix: str) -> None:
    path = f"/v2/models/{name or 'x'}" + (f"/versions/{version}" if version else "") + suffix
    _check(transport, Request("POST" if suffix == "/infer" else "GET", path, b"{}"))


@FUZZ
@given(body=json_values)
def test_results_endpoint_never_5xx(transport, body) -> None:
    _check(transport, Request("POST", "/v1/results", json.dumps(body).encode()))


def test_deeply_nested_json_and_size_limits(transport) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    assert _check(transport, Request("POST", "/v2/models/digits/infer", deep[:60_000])) == 400
    assert _check(transport, Request("POST", "/v2/models/digits/infer", b"x" * 70_000)) == 413
    assert _check(transport, Request("POST", "/v2/models/digits/infer", b"")) == 400
    nested = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP32",
                    "shape": [1, 1, 8, 8],
                    "data": [[[[0.0] * 8] * 8]],
                }
            ]
        }
    ).encode()
    assert _check(transport, Request("POST", "/v2/models/digits/infer", nested)) == 200
