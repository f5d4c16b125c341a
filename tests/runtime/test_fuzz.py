"""Property-based fuzzing of every endpoint (hypothesis): malformed JSON, wrong datatypes,
shape and data-length mismatches, unknown models and versions, huge or empty bodies, bad
binary headers. The server must answer every one with a non-5xx status and, for errors,
a JSON {"error": str} body."""

from __future__ import annotations

import json
from concurrent.futures import Future, ThreadPoolExecutor
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


# ---------------------------------------------------------------------- more endpoints

paths = st.sampled_from(
    [
        "/v2",
        "/v2/models/stats",
        "/v2/models/{m}",
        "/v2/models/{m}/config",
        "/v2/models/{m}/stats",
        "/v2/models/{m}/ready",
        "/v2/models/{m}/versions/{v}/config",
        "/v2/models/{m}/versions/{v}/stats",
    ]
)
names = models | st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FF), max_size=10)


def _url(template: str, name: str, version: str) -> str:
    from urllib.parse import quote

    return template.format(m=quote(name or "x", safe=""), v=quote(version or "1", safe=""))


@FUZZ
@given(path=paths, name=names, version=st.text(max_size=4))
def test_metadata_config_stats_never_5xx(transport, path: str, name: str, version: str) -> None:
    _check(transport, Request("GET", _url(path, name, version), b""))


@FUZZ
@given(
    action=st.sampled_from(["index", "load", "unload"]),
    name=names,
    body=st.binary(max_size=40) | json_values.map(lambda v: json.dumps(v).encode()),
    encoding=st.sampled_from(["", "gzip", "deflate", "br", "identity"]),
)
def test_repository_extension_never_5xx(
    transport, action: str, name: str, body: bytes, encoding: str
) -> None:
    path = (
        "/v2/repository/index"
        if action == "index" or name in ("digits",)  # keep digits served for the others
        else _url(f"/v2/repository/models/{{m}}/{action}", name, "")
    )
    headers = {"Content-Encoding": encoding} if encoding else {}
    _check(transport, Request("POST", path, body, headers))


# ---------------------------------------------------------------------- gRPC


@pytest.fixture(scope="module")
def grpc_stub(model_repo: Path, tmp_path_factory: pytest.TempPathFactory):
    import grpc
    from tritonclient.grpc import service_pb2_grpc

    app = build_app(
        ModelRepository(model_repo),
        ServerSettings(max_request_bytes=64 * 1024),
        sink_path=tmp_path_factory.mktemp("gfuzz") / "sink.db",
        grpc_port=0,
    )
    t = MemoryTransport(app)  # runs the lifespan: the gRPC port is bound on its loop
    channel = grpc.insecure_channel(f"127.0.0.1:{app.state.server.grpc_port}")
    try:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)
    finally:
        channel.close()
        t.close()


_BAD_CODES = {"StatusCode.INTERNAL", "StatusCode.UNKNOWN"}


def _grpc_check(call, request) -> None:
    import grpc

    try:
        call(request, timeout=20)
    except grpc.RpcError as exc:
        assert str(exc.code()) not in _BAD_CODES, (request, exc.code(), exc.details())


contents_fields = st.sampled_from(
    [
        "bool_contents",
        "int_contents",
        "int64_contents",
        "uint_contents",
        "uint64_contents",
        "fp32_contents",
        "fp64_contents",
        "bytes_contents",
    ]
)


@st.composite
def infer_requests(draw):  # type: ignore[no-untyped-def]
    from tritonclient.grpc import service_pb2 as pb

    req = pb.ModelInferRequest(model_name=draw(models), model_version=draw(st.text(max_size=3)))
    raw = draw(st.booleans())
    for _ in range(draw(st.integers(0, 2))):
        t = req.inputs.add(
            name=draw(st.sampled_from(["input", "INPUT0", ""]) | st.text(max_size=4)),
            datatype=draw(st.sampled_from([*DATATYPES, "FP8"])),
            shape=draw(st.lists(st.integers(-3, 70), max_size=4)),
        )
        if raw:
            req.raw_input_contents.append(draw(st.binary(max_size=300)))
        else:
            field = draw(contents_fields)
            values = {
                "bool_contents": st.booleans(),
                "int_contents": st.integers(-(2**31), 2**31 - 1),
                "int64_contents": st.integers(-(2**63), 2**63 - 1),
                "uint_contents": st.integers(0, 2**32 - 1),
                "uint64_contents": st.integers(0, 2**64 - 1),
                "fp32_contents": st.floats(width=32),
                "fp64_contents": st.floats(),
                "bytes_contents": st.binary(max_size=6),
            }[field]
            getattr(t.contents, field).extend(draw(st.lists(values, max_size=70)))
    for _ in range(draw(st.integers(0, 2))):
        req.outputs.add(name=draw(st.sampled_from(["logits", "OUTPUT0"]) | st.text(max_size=4)))
    if draw(st.booleans()) and req.raw_input_contents:
        req.raw_input_contents.append(b"extra")
    return req


@FUZZ
@given(request=infer_requests())
def test_grpc_infer_never_internal(grpc_stub, request) -> None:
    _grpc_check(grpc_stub.ModelInfer, request)


@FUZZ
@given(
    method=st.sampled_from(
        ["ModelReady", "ModelMetadata", "ModelConfig", "ModelStatistics", "RepositoryIndex"]
    ),
    name=names,
    version=st.text(max_size=4),
)
def test_grpc_other_methods_never_internal(grpc_stub, method: str, name: str, version: str) -> None:
    from tritonclient.grpc import service_pb2 as pb

    request = {
        "ModelReady": lambda: pb.ModelReadyRequest(name=name, version=version),
        "ModelMetadata": lambda: pb.ModelMetadataRequest(name=name, version=version),
        "ModelConfig": lambda: pb.ModelConfigRequest(name=name, version=version),
        "ModelStatistics": lambda: pb.ModelStatisticsRequest(name=name, version=version),
        "RepositoryIndex": lambda: pb.RepositoryIndexRequest(ready=bool(version)),
    }[method]()
    _grpc_check(getattr(grpc_stub, method), request)


# ---------------------------------------------------------------------- 20,000 requests


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


PER_EXAMPLE = 10  # requests drawn per hypothesis example in the 20k-request test
SENDERS = 4  # worker threads sending them (httpx.Client and a gRPC stub are thread-safe)


@pytest.mark.slow
def test_fuzz_20k_requests_against_a_server_process(model_repo: Path, tmp_path: Path) -> None:
    """>= 20,000 fuzzed HTTP requests (every endpoint, with and without a token) and gRPC
    calls against ``edgeintel serve``: no 5xx / INTERNAL, the server's memory and its
    /metrics page bounded (no series from URLs or bodies)."""
    import grpc
    import httpx
    from tritonclient.grpc import service_pb2_grpc

    from tests.runtime.conftest import ServerProcess, free_port

    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"devices": {"cam": "d" * 20}, "operators": {"op": "o" * 20}}))
    gport = free_port()
    srv = ServerProcess(
        model_repo,
        tmp_path,
        "--tokens",
        str(tokens),
        "--sink",
        str(tmp_path / "sink.db"),
        "--grpc-port",
        str(gport),
        "--max-request-bytes",
        str(64 * 1024),
    ).start()
    op = {"Authorization": "Bearer " + "o" * 20}
    md = (("authorization", "Bearer " + "d" * 20),)
    sent = {"http": 0, "grpc": 0}
    # up to SENDERS requests in flight on worker threads while hypothesis draws the next
    # example (drawing and the server's answers overlap); each phase's answers are checked
    # before the next phase starts
    pool = ThreadPoolExecutor(max_workers=SENDERS)
    pending: list[Future[None]] = []
    try:
        assert srv.proc is not None
        http = httpx.Client(base_url=f"http://{srv.url}", timeout=30)
        stub = service_pb2_grpc.GRPCInferenceServiceStub(
            grpc.insecure_channel(f"127.0.0.1:{gport}")
        )
        warm = _rss_mib(srv.proc.pid)

        def http_send(method: str, path: str, body: bytes, h: dict) -> None:
            r = http.request(method, path, content=body, headers=h)
            assert r.status_code < 500, (path, r.status_code, r.text[:300])

        def http_check(method: str, path: str, body: bytes, headers: dict, auth: bool) -> None:
            h = {**headers, **({"Authorization": "Bearer " + "d" * 20} if auth else {})}
            pending.append(pool.submit(http_send, method, path, body, h))
            sent["http"] += 1

        def answered() -> None:
            for f in pending:
                f.result()  # re-raises a 5xx's assertion, naming its path and body
            pending.clear()

        # each example is a batch of PER_EXAMPLE requests: hypothesis's own cost per example
        # (most of this test's time when each example was one request) is paid a tenth as often
        many = settings(
            max_examples=3_000 // PER_EXAMPLE,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )

        def batch(*parts: st.SearchStrategy) -> st.SearchStrategy:
            return st.lists(st.tuples(*parts), min_size=PER_EXAMPLE, max_size=PER_EXAMPLE)

        @many
        @given(batch(models, bodies, st.binary(max_size=64), st.booleans()))
        def infer(draws: list) -> None:
            for model, body, tail, auth in draws:
                head = json.dumps(body).encode()
                hl = {"Inference-Header-Content-Length": str(len(head))} if tail else {}
                http_check("POST", f"/v2/models/{model}/infer", head + tail, hl, auth)

        @many
        @given(batch(paths, names, st.text(max_size=4), st.booleans()))
        def reads(draws: list) -> None:
            for path, name, version, auth in draws:
                http_check("GET", _url(path, name, version), b"", {}, auth)

        @many
        @given(batch(json_values, st.booleans()))
        def results(draws: list) -> None:
            for body, auth in draws:
                http_check("POST", "/v1/results", json.dumps(body).encode(), {}, auth)

        @many
        @given(batch(names, st.sampled_from(["load", "unload"]), st.binary(max_size=20)))
        def repository(draws: list) -> None:
            for name, action, body in draws:
                if name != "digits":
                    path = _url(f"/v2/repository/models/{{m}}/{action}", name, "")
                    pending.append(pool.submit(http_send, "POST", path, body, op))
                    sent["http"] += 1

        def grpc_send(request) -> None:  # type: ignore[no-untyped-def]
            try:
                stub.ModelInfer(request, metadata=md, timeout=20)
            except grpc.RpcError as exc:
                assert str(exc.code()) not in _BAD_CODES, (request, exc.code(), exc.details())

        @many
        @given(st.lists(infer_requests(), min_size=PER_EXAMPLE, max_size=PER_EXAMPLE))
        def grpc_infer(requests: list) -> None:
            for request in requests:
                sent["grpc"] += 1
                pending.append(pool.submit(grpc_send, request))

        for fuzz in (infer, reads, results, repository, grpc_infer):
            before = sum(sent.values())
            fuzz()
            answered()
            assert sum(sent.values()) - before >= 2_000
        while sum(sent.values()) < 20_000:  # top up with more infer examples
            infer()
            answered()
        metrics = http.get("/metrics", headers=op)
        assert metrics.status_code == 200
        grown = _rss_mib(srv.proc.pid) - warm
        print(f"requests {sent}, rss +{grown:.1f} MiB, /metrics {len(metrics.content)} bytes")
        assert sum(sent.values()) >= 20_000
        assert len(metrics.content) < 64 * 1024
        assert grown < 64
        assert not any(
            'status="5' in line for line in metrics.text.splitlines() if "requests_total" in line
        )
    finally:
        pool.shutdown(cancel_futures=True)
        srv.stop()
