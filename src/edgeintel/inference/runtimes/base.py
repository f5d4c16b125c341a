"""The runtime record, the predictor interface and the artifact source shared by runtimes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgeintel.errors import ConfigError
from edgeintel.inference.runtimes import PRECISIONS, RUNTIMES

__all__ = [
    "ExportSource",
    "Predictor",
    "Probe",
    "Runtime",
    "SessionPredictor",
    "get_runtime",
    "predict_all",
]


class Predictor(Protocol):
    """A loaded artifact: ``run`` maps a float32 batch (N, ...) to its outputs (N, K)."""

    def run(self, batch: np.ndarray) -> np.ndarray: ...


class SessionPredictor:
    """An ONNX Runtime session (already made) as a ``Predictor``: its first input and output."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.input_name = session.get_inputs()[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self.input_name: batch})[0])


Probe = Callable[[np.ndarray], dict[str, np.ndarray]]
"""Runs a batch and returns named intermediate tensors (those the runtime exposes)."""


@dataclass(frozen=True)
class ExportSource:
    """What a runtime exports from: an fp32 ONNX file and, where known, the PyTorch model.

    ``input_shape`` is one sample's shape (no batch axis). Runtimes that convert ONNX use
    ``onnx_path``; runtimes that export from PyTorch (ExecuTorch) need ``model``.
    """

    onnx_path: Path
    input_shape: tuple[int, ...]
    model: Any | None = None


@dataclass(frozen=True)
class Runtime:
    """One device runtime: its artifact format, precisions and the calls that make and run it.

    ``export(source, out_dir, precision, calibration)`` writes the artifact and returns its
    path (``calibration``: float32 samples for int8, ``None`` for fp32); ``load(path)``
    returns a ``Predictor``; ``probe(path, names)``, where not ``None``, returns a ``Probe``
    exposing the named intermediate tensors (ONNX tensor names) for layer localisation.
    ``imports`` are the modules ``load`` needs (imported before memory is measured).
    """

    name: str
    suffix: str
    imports: tuple[str, ...]
    export: Callable[[ExportSource, Path, str, np.ndarray | None], Path]
    load: Callable[[Path], Predictor]
    probe: Callable[[Path, list[str]], Probe] | None = None
    precisions: tuple[str, ...] = PRECISIONS
    sidecars: tuple[str, ...] = ()
    from_torch: bool = False  # exports from ``ExportSource.model`` (else from the ONNX file)
    notes: str = field(default="", compare=False)

    def files(self, artifact: Path) -> list[Path]:
        """The artifact's files: ``artifact`` and its sidecars (OpenVINO's ``.bin`` weights)."""
        return [artifact, *(artifact.with_suffix(s) for s in self.sidecars)]

    def size_bytes(self, artifact: Path) -> int:
        """Bytes on disk of the artifact and its sidecars (what a device receives)."""
        return sum(p.stat().st_size for p in self.files(artifact) if p.is_file())

    def check_precision(self, precision: str) -> None:
        """Raise a one-line ``ConfigError`` for a precision this runtime does not export."""
        if precision not in self.precisions:
            raise ConfigError(
                f"runtime {self.name!r} exports precisions {', '.join(self.precisions)}; "
                f"got {precision!r}"
            )


def get_runtime(name: str) -> Runtime:
    """The registered runtime ``name`` (its module, and so its package, imported now)."""
    return RUNTIMES.get(name)


def predict_all(predictor: Predictor, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Outputs of ``predictor`` for every sample of ``x`` (N, ...), in batches; float32."""
    outs = [
        np.asarray(predictor.run(np.ascontiguousarray(x[i : i + batch_size], dtype=np.float32)))
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(outs) if outs else np.empty((0,), dtype=np.float32)
