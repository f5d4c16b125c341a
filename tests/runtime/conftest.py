"""Fixtures of the runtime tests: real ONNX models in a repository, and a real server
process on loopback (free port, stopped in ``finally``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeintel.models.export import export_onnx
from edgeintel.models.zoo import build_model
from edgeintel.runtime.repository import add_model

ROOT = Path(__file__).resolve().parents[2]

ONNX_TYPES = {
    "BOOL": TensorProto.BOOL,
    "UINT8": TensorProto.UINT8,
    "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32,
    "UINT64": TensorProto.UINT64,
    "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16,
    "INT32": TensorProto.INT32,
    "INT64": TensorProto.INT64,
    "FP16": TensorProto.FLOAT16,
    "FP32": TensorProto.FLOAT,
    "FP64": TensorProto.DOUBLE,
    "BYTES": TensorProto.STRING,
}


def identity_model(path: Path, datatype: str) -> Path:
    """An ONNX Identity model ``INPUT0 -> OUTPUT0`` of one datatype, shape (batch, 4)."""
    t = ONNX_TYPES[datatype]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])],
        f"identity_{datatype.lower()}",
        [helper.make_tensor_value_info("INPUT0", t, ["batch", 4])],
        [helper.make_tensor_value_info("OUTPUT0", t, ["batch", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def digits_onnx(path: Path) -> Path:
    """The zoo's image CNN at digits' shape (1, 8, 8), untrained but real ONNX."""
    import torch

    torch.manual_seed(0)
    model = build_model("image_cnn", (1, 8, 8), 10, width=8)
    export_onnx(model, (1, 8, 8), path, labels=[str(i) for i in range(10)])
    return path


@pytest.fixture(scope="session")
def model_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """digits (versions 1 and 2) and one identity model per protocol datatype."""
    root = tmp_path_factory.mktemp("repo")
    work = tmp_path_factory.mktemp("onnx")
    digits = digits_onnx(work / "digits.onnx")
    add_model(root, "digits", digits, 1, labels=[str(i) for i in range(10)])
    add_model(root, "digits", digits, 2, labels=[str(i) for i in range(10)])
    for dt in ONNX_TYPES:
        name = f"identity_{dt.lower()}"
        add_model(root, name, identity_model(work / f"{name}.onnx", dt))
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``edgeintel serve`` as a child process on 127.0.0.1."""

    def __init__(
        self, repo: Path, tmp: Path, *extra: str, port: int | None = None, tls: Any = None
    ) -> None:
        self.port = port or free_port()
        self.url = f"127.0.0.1:{self.port}"
        self.tls = tls  # a TlsFiles: mutual TLS, the readiness probe presents its certificate
        if tls is not None:
            extra = (*extra, "--tls-cert", str(tls.cert), "--tls-key", str(tls.key))
            extra = (*extra, "--tls-ca", str(tls.ca), "--tls-crl", str(tls.crl))
        self.args = [
            sys.executable,
            "-m",
            "edgeintel",
            "serve",
            str(repo),
            "--port",
            str(self.port),
            *extra,
        ]
        self.log = tmp / f"server-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60.0) -> ServerProcess:
        import httpx

        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                scheme = "https" if self.tls else "http"
                verify: Any = True if self.tls is None else self.tls.client_context()
                url = f"{scheme}://{self.url}/v2/health/ready"
                if httpx.get(url, timeout=1, verify=verify).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not ready in {timeout_s} s: {self.log.read_text()[-2000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


@pytest.fixture(scope="module")
def server(model_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("server")
    srv = ServerProcess(model_repo, tmp, "--sink", str(tmp / "sink.db"))
    try:
        yield srv.start()
    finally:
        srv.stop()


def sample_digits(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 1, 8, 8), dtype=np.float32)


def real_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1797 real 8x8 handwritten digits, (N, 1, 8, 8) float32 in [0, 1]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32)[:, None], d.target.astype(np.int64)


def linear_onnx(path: Path, x: np.ndarray, y: np.ndarray, permute: int = 0) -> Path:
    """A linear classifier ``input (n, 1, 8, 8) -> logits (n, 10)`` fitted by ridge regression
    on one-hot labels (real ONNX: Flatten, MatMul, Add); ``permute`` shifts its classes by
    that many (a regressed version: same shape and speed, wrong answers)."""
    a = np.c_[x.reshape(len(x), -1), np.ones(len(x))].astype(np.float64)
    target = np.eye(10)[(y + permute) % 10]
    w = np.linalg.solve(a.T @ a + 1e-1 * np.eye(a.shape[1]), a.T @ target).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["input"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "W"], ["mm"]),
            helper.make_node("Add", ["mm", "b"], ["logits"]),
        ],
        "linear_digits",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(w[:-1], "W"), numpy_helper.from_array(w[-1], "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path
