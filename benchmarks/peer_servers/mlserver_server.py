"""MLServer serving one ONNX model, for benchmarks/_peers_serve.py.

Runs under ``.venv-peers/mlserver/bin/python`` (MLServer 1.7 needs fastapi<0.116 and
starlette<0.47; never imports edgeintel). A custom ``MLModel`` (MLServer ships no ONNX
runtime) runs ONNX Runtime with one intra-op and one inter-op thread, as ``edgeintel
serve`` does, in MLServer's default layout: the REST/gRPC front process and one
inference worker process (``parallel_workers`` 1), with MLServer's adaptive batching
on (``--max-batch-size`` requests, ``--max-batch-time-s`` wait). MLServer's REST face
speaks JSON v2 only (no binary data extension).

Usage: python mlserver_server.py MODEL.onnx NAME HTTP_PORT GRPC_PORT METRICS_PORT
       [--max-batch-size N] [--max-batch-time-s S]
Stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxModel(MLModel):  # type: ignore[misc]
    """One ONNX file (the model settings' ``parameters.uri``) behind MLServer's v2 handlers."""

    async def load(self) -> bool:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        uri = self.settings.parameters.uri
        self.sess = ort.InferenceSession(uri, opts, providers=["CPUExecutionProvider"])
        self.input = self.sess.get_inputs()[0].name
        self.output = self.sess.get_outputs()[0].name
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32, copy=False)
        y = self.sess.run([self.output], {self.input: x})[0]
        return InferenceResponse(
            model_name=self.name, outputs=[NumpyCodec.encode_output(self.output, y)]
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    for a in ("model", "name"):
        ap.add_argument(a)
    for a in ("http_port", "grpc_port", "metrics_port"):
        ap.add_argument(a, type=int)
    ap.add_argument("--max-batch-size", type=int, default=32)
    ap.add_argument("--max-batch-time-s", type=float, default=0.002)
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="mlserver-"))
    settings = {
        "host": "127.0.0.1",
        "http_port": args.http_port,
        "grpc_port": args.grpc_port,
        "metrics_port": args.metrics_port,
        "debug": False,
        "parallel_workers": 1,
    }
    model = {
        "name": args.name,
        "implementation": "mlserver_server.OnnxModel",
        "parameters": {"uri": str(Path(args.model).resolve())},
        "max_batch_size": args.max_batch_size,
        "max_batch_time": args.max_batch_time_s,
    }
    (folder / "settings.json").write_text(json.dumps(settings))
    (folder / "model-settings.json").write_text(json.dumps(model))
    from mlserver.cli.main import main as mlserver_main

    sys.argv = ["mlserver", "start", str(folder)]
    mlserver_main()


if __name__ == "__main__":
    main()
