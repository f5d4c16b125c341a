"""Scoped thread limits: training, fine-tuning and calibration run on a fixed thread count.

torch's default intra-op pool uses every core; on a busy machine that
oversubscription made the factory scenario's central baseline 185x slower
(1447 s instead of 7.8 s). Library code never changes the process-wide
setting for good: ``thread_limit`` sets torch's pool and the numpy/BLAS/OpenMP
pools (threadpoolctl) for the duration of a ``with`` block and restores them
afterwards; ``ort_calibration_threads`` does the same for the ONNX Runtime
session that int8 calibration opens.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from edgeintel.errors import ConfigError

__all__ = ["DEFAULT_THREADS", "ort_calibration_threads", "scenario_threads", "thread_limit"]

DEFAULT_THREADS = 1
"""Threads per process for training, fine-tuning and calibration unless configured."""


def scenario_threads(scenario: Any) -> int:
    """The threads a scenario asks for (``settings.threads``), or ``DEFAULT_THREADS``."""
    threads = getattr(scenario.settings, "threads", None)
    return DEFAULT_THREADS if threads is None else int(threads)


def _check(threads: int | None) -> None:
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise ConfigError(f"threads must be an integer >= 1 (or None), got {threads!r}")


@contextmanager
def thread_limit(threads: int | None = DEFAULT_THREADS) -> Iterator[None]:
    """Limit torch and native thread pools to ``threads`` inside the block (``None``: as is)."""
    _check(threads)
    if threads is None:
        yield
        return
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(threads):
            yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def ort_calibration_threads(threads: int | None = DEFAULT_THREADS) -> Iterator[None]:
    """Give the session ONNX Runtime's calibrator opens ``threads`` intra-op threads.

    ``onnxruntime.quantization`` builds that session with default options (one
    thread per core) and offers no setting for it, so the calibrator's factory
    method is replaced for the duration of the block and restored afterwards.
    """
    _check(threads)
    if threads is None:
        yield
        return
    import onnxruntime
    from onnxruntime.quantization.calibrate import CalibraterBase

    original = CalibraterBase.create_inference_session

    def create_inference_session(self: Any) -> None:
        opts = onnxruntime.SessionOptions()
        opts.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.infer_session = onnxruntime.InferenceSession(
            self.augmented_model_path, sess_options=opts, providers=self.execution_providers
        )

    CalibraterBase.create_inference_session = create_inference_session  # type: ignore[method-assign]
    try:
        yield
    finally:
        CalibraterBase.create_inference_session = original  # type: ignore[method-assign]
