"""KServe's Python model server serving one ONNX model, for benchmarks/_peers_serve.py.

Runs under ``.venv-peers/kserve/bin/python`` (KServe needs pandas<3 and psutil<6; never
imports edgeintel). A ``kserve.Model`` whose ``predict`` runs ONNX Runtime with one
intra-op and one inter-op thread (as ``edgeintel serve`` does) in KServe's
``ModelServer``: one uvicorn worker, Open Inference Protocol v2 over REST (with the
binary data extension) and gRPC, per-request logging off (as in edgeintel serve).
KServe's Python server has no dynamic batcher (its batcher is the Go agent of a
Kubernetes deployment), so each request is one ORT call.

Usage: python kserve_server.py MODEL.onnx NAME HTTP_PORT GRPC_PORT
Stops on SIGTERM.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

ARGS = sys.argv[1:]
sys.argv = sys.argv[:1]  # kserve parses the command line when imported

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer  # noqa: E402


class OnnxModel(Model):  # type: ignore[misc]
    """One ONNX file behind KServe's v2 handlers."""

    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.input = self.sess.get_inputs()[0].name
        self.output = self.sess.get_outputs()[0].name
        self.ready = True

    async def predict(
        self,
        payload: InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> Any:
        x = payload.inputs[0].as_numpy().astype(np.float32, copy=False)
        y = self.sess.run([self.output], {self.input: x})[0]
        out = InferOutput(name=self.output, shape=list(y.shape), datatype="FP32")
        out.set_data_from_numpy(y, binary_data=payload.use_binary_outputs)
        return InferResponse(
            model_name=self.name,
            infer_outputs=[out],
            response_id=payload.id,
            use_binary_outputs=payload.use_binary_outputs,
        )


def main() -> None:
    path, name, http_port, grpc_port = ARGS
    model = OnnxModel(name, path)
    server = ModelServer(
        http_port=int(http_port),
        grpc_port=int(grpc_port),
        workers=1,
        enable_latency_logging=False,
        access_log_format=None,
    )
    # KServe logs two lines per request by default (uvicorn's access log and timing_asgi's
    # trace); edgeintel serve logs none, so neither does the peer (set after ModelServer
    # configured logging)
    for quiet in ("uvicorn.access", "kserve.trace"):
        logging.getLogger(quiet).setLevel(logging.WARNING)
    server.start([model])


if __name__ == "__main__":
    main()
