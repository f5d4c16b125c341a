"""The KServe SDK as the reference client (issue 21): its REST and gRPC clients, run from
KServe's own venv (``.venv-peers/kserve``, built by ``make test``; KServe needs pandas<3
and psutil<6, which cannot live beside the project's pins) as a subprocess, against a
real ``edgeintel serve`` on loopback with mutual TLS on both faces: liveness,
readiness, model readiness, server and model metadata (the SDK's pydantic models and
protobuf messages), JSON and binary inference with outputs equal to ONNX Runtime's, and
unknown models refused. Skipped, saying how to build it, when the venv is absent."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeintel.onnx_files import make_session
from edgeintel.security.pki import Role, issue_ca, issue_cert
from tests.runtime.conftest import ROOT, ServerProcess, free_port, sample_digits

KSERVE_PY = ROOT / ".venv-peers" / "kserve" / "bin" / "python"
CLIENT = Path(__file__).with_name("kserve_sdk_client.py")

pytestmark = pytest.mark.skipif(
    not KSERVE_PY.exists(),
    reason=f"the KServe SDK's venv {KSERVE_PY.parent.parent} is absent: `make kserve-venv` "
    "builds it (`make test` does)",
)


@pytest.fixture(scope="module")
def sdk_calls(model_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """What every SDK call returned (one client subprocess), and the input it sent."""
    tmp = tmp_path_factory.mktemp("kserve-sdk")
    ca = issue_ca(tmp / "ca")
    node = issue_cert(ca, "edge-1", Role.NODE, tmp / "ca")
    device = issue_cert(ca, "phone-0", Role.DEVICE, tmp / "ca")
    grpc_port = free_port()
    srv = ServerProcess(model_repo, tmp, "--grpc-port", str(grpc_port), tls=node)
    x = sample_digits(3, seed=7)
    np.save(tmp / "x.npy", x)
    cfg = {
        "host": "127.0.0.1",
        "port": srv.port,
        "grpc_port": grpc_port,
        "model": "digits",
        "cert": str(device.cert),
        "key": str(device.key),
        "ca": str(device.ca),
        "x": str(tmp / "x.npy"),
    }
    (tmp / "cfg.json").write_text(json.dumps(cfg))
    try:
        srv.start()
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        out = subprocess.run(
            [str(KSERVE_PY), str(CLIENT), str(tmp / "cfg.json")],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        yield json.loads(out.stdout.strip().splitlines()[-1]), x
    finally:
        srv.stop()


def _expected(model_repo: Path, x: np.ndarray) -> np.ndarray:
    sess = make_session(model_repo / "digits" / "2" / "model.onnx")
    return np.asarray(sess.run(["logits"], {"input": x})[0])


@pytest.mark.parametrize("face", ["rest", "grpc"])
def test_health_and_readiness_read_by_the_sdk(sdk_calls: Any, face: str) -> None:
    calls = sdk_calls[0][face]
    assert calls["live"] is True and calls["ready"] is True and calls["model_ready"] is True


def test_unknown_model_is_not_ready_over_rest(sdk_calls: Any) -> None:
    assert sdk_calls[0]["rest"]["unknown_model_ready"] is False


@pytest.mark.parametrize("face", ["rest", "grpc"])
def test_metadata_parses_with_the_sdks_models(sdk_calls: Any, face: str) -> None:
    calls = sdk_calls[0][face]
    assert calls["server_metadata"]["name"]
    assert "binary_tensor_data" in calls["server_metadata"]["extensions"]
    meta = calls["model_metadata"]
    assert meta["name"] == "digits"
    assert [(t["name"], t["datatype"]) for t in meta["inputs"]] == [("input", "FP32")]
    assert [(t["name"], t["datatype"]) for t in meta["outputs"]] == [("logits", "FP32")]


@pytest.mark.parametrize("call", ["rest/infer_json", "rest/infer_binary", "grpc/infer"])
def test_inference_through_the_sdk_equals_onnx_runtime(
    sdk_calls: Any, model_repo: Path, call: str
) -> None:
    calls, x = sdk_calls
    face, name = call.split("/")
    got = calls[face][name]
    assert got["name"] == "logits" and got["shape"] == [3, 10]
    np.testing.assert_allclose(
        np.array(got["values"]), _expected(model_repo, x), rtol=1e-5, atol=1e-6
    )


def test_unknown_model_inference_is_refused(sdk_calls: Any) -> None:
    calls = sdk_calls[0]
    assert calls["rest"]["unknown_model_infer"] in (400, 404)
    assert calls["grpc"]["unknown_model_infer"] in ("NOT_FOUND", "INVALID_ARGUMENT")
