"""Rollout versioning over gRPC as over HTTP: during a canary, a device's unversioned
``ModelInfer`` (and stream) is served the version its rollout assigns it, answered with
that ``model_version`` and that version's outputs; an explicit version is honoured; the
repository index and the model metadata list the versions served."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeintel.onnx_files import make_session
from edgeintel.runtime.auth import Tokens
from edgeintel.runtime.repository import ModelRepository, add_model
from edgeintel.runtime.server import build_app
from edgeintel.runtime.transport import MemoryTransport, Request
from tests.runtime.conftest import linear_onnx, real_digits

DEVICES = [f"cam-{i}" for i in range(4)]
TOKENS = Tokens(
    devices={d: f"{d}-token-0123456789abcdef" for d in DEVICES},
    nodes={},
    operators={"op": "operator-token-0123456789abcdef"},
)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def test_grpc_infer_follows_the_rollout_assignment(tmp_path: Path) -> None:
    grpc = pytest.importorskip("grpc")
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc

    x, y = real_digits()
    for v, permute in ((1, 0), (2, 3)):  # version 2 answers other classes: tells them apart
        add_model(tmp_path / "repo", "digits", linear_onnx(tmp_path / f"v{v}.onnx", x[:900],
                                                           y[:900], permute), v)  # fmt: skip
    repo = ModelRepository(tmp_path / "repo")
    repo.pin("digits", "1")
    app = build_app(repo, tokens=TOKENS, sink_path=tmp_path / "sink.db", grpc_port=0)
    http = MemoryTransport(app)
    channel = grpc.insecure_channel(f"127.0.0.1:{app.state.server.grpc_port}")
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    sessions = {v: make_session(tmp_path / f"v{v}.onnx") for v in ("1", "2")}
    sample = np.ascontiguousarray(x[1000:1001])

    def infer(device: str, version: str = "") -> tuple[str, np.ndarray]:
        req = pb.ModelInferRequest(model_name="digits", model_version=version)
        req.inputs.add(name="input", datatype="FP32", shape=list(sample.shape))
        req.raw_input_contents.append(sample.tobytes())
        md = (("authorization", f"Bearer {TOKENS.devices[device]}"),)
        resp = stub.ModelInfer(req, metadata=md, timeout=20)
        out = np.frombuffer(resp.raw_output_contents[0], dtype=np.float32).reshape(1, 10)
        return resp.model_version, out

    try:
        assert {infer(d)[0] for d in DEVICES} == {"1"}  # before: the pinned version
        body = json.dumps({"model": "digits", "version": "2", "stages": [0.5, 1.0]}).encode()
        resp = http.send(
            Request("POST", "/v1/rollout", body, _bearer("operator-token-0123456789abcdef"))
        )
        assert resp.status == 200, resp.body
        assigned = {}
        for d in DEVICES:  # what the device learns from its deliveries (HTTP)
            r = http.send(Request("POST", "/v1/results",
                                  json.dumps({"device": d, "records": []}).encode(),
                                  _bearer(TOKENS.devices[d])))  # fmt: skip
            assigned[d] = json.loads(r.body)["assign"]["digits"]
        assert set(assigned.values()) == {"1", "2"}  # a canary: some devices, not all
        for d in DEVICES:
            version, out = infer(d)
            assert version == assigned[d]
            want = sessions[version].run(None, {"input": sample})[0]
            assert np.allclose(out, want, atol=1e-5)
            assert infer(d, "1")[0] == "1"  # an explicit version is honoured
        index = stub.RepositoryIndex(
            pb.RepositoryIndexRequest(),
            metadata=(("authorization", f"Bearer {TOKENS.devices['cam-0']}"),),
        )
        listed = {(m.name, m.version, m.state) for m in index.models}
        assert {("digits", "1", "READY"), ("digits", "2", "READY")} <= listed
        meta = stub.ModelMetadata(
            pb.ModelMetadataRequest(name="digits"),
            metadata=(("authorization", f"Bearer {TOKENS.devices['cam-0']}"),),
        )
        assert set(meta.versions) >= {"1", "2"}
    finally:
        channel.close()
        http.close()
