"""Triton (through PyTriton) serving one ONNX model, for benchmarks/_peers_serve.py.

Runs under ``.venv-peers/triton/bin/python`` (PyTriton needs numpy<2; never imports
edgeintel). Triton's own HTTP front end and dynamic batcher (up to ``--max-batch-size``
rows, Triton's default ``max_queue_delay_microseconds`` 0: a batch is what is queued
when the model is free, the rule of edgeintel's adaptive wait) in front of a Python
callable that runs ONNX Runtime with one intra-op and one inter-op thread, as
``edgeintel serve`` does.

Usage: python triton_server.py MODEL.onnx NAME HTTP_PORT GRPC_PORT METRICS_PORT
       [--max-batch-size N]
Prints ``ready`` once the model is served; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import sysconfig

import numpy as np
import onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig


def session(path: str) -> ort.InferenceSession:
    """ONNX Runtime CPU session with 1 intra-op and 1 inter-op thread (edgeintel's)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def main() -> None:
    ap = argparse.ArgumentParser()
    for a in ("model", "name"):
        ap.add_argument(a)
    for a in ("http_port", "grpc_port", "metrics_port"):
        ap.add_argument(a, type=int)
    ap.add_argument("--max-batch-size", type=int, default=32)
    args = ap.parse_args()
    # Triton's Python-backend stub links libpython3.11 by name; without this it finds the
    # system's (another patch release) and fails in multiprocessing (RLock._recursion_count)
    libdir = sysconfig.get_config_var("LIBDIR")
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (libdir, os.environ.get("LD_LIBRARY_PATH")) if p
    )
    sess = session(args.model)
    inp, out = sess.get_inputs()[0], sess.get_outputs()[0]

    @batch
    def infer(**feeds: np.ndarray) -> dict[str, np.ndarray]:
        x = feeds[inp.name]
        return {out.name: sess.run([out.name], {inp.name: x})[0]}

    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=args.http_port,
        grpc_address="127.0.0.1",
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        allow_metrics=False,
    )
    with Triton(config=config) as triton:
        triton.bind(
            model_name=args.name,
            infer_func=infer,
            inputs=[Tensor(name=inp.name, dtype=np.float32, shape=tuple(inp.shape[1:]))],
            outputs=[Tensor(name=out.name, dtype=np.float32, shape=tuple(out.shape[1:]))],
            config=ModelConfig(
                max_batch_size=args.max_batch_size,
                batcher=DynamicBatcher(max_queue_delay_microseconds=0),
            ),
            strict=False,
        )
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        print("ready", flush=True)
        triton.serve()


if __name__ == "__main__":
    main()
