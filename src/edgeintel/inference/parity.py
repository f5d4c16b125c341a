"""The parity matrix: every (runtime, precision) artifact checked on real held-out data.

For each runtime and precision the artifact is exported from the same model, run on the
whole test set and compared with the fp32 reference (the PyTorch model where given, else
ONNX Runtime on the fp32 ONNX file): task metric (top-1 accuracy), top-1 agreement, max and
mean absolute logit error, and, where agreement is below its goal, the first layer whose
outputs diverge (both graphs run up to every layer on the same inputs, ``locate_divergence``),
plus file size, batch-1 latency and peak memory. Random inputs are never used: a conversion
that only breaks real inputs (a dropped normalisation, a wrong layout) shows here.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgeintel.errors import ConfigError, EdgeIntelError
from edgeintel.inference.runtimes import PRECISIONS, RUNTIMES
from edgeintel.inference.runtimes.base import ExportSource, Runtime, get_runtime, predict_all
from edgeintel.inference.runtimes.measure import RuntimeMeasurement, measure_artifact
from edgeintel.inference.runtimes.onnx_rt import ONNX_RUNTIME, node_outputs

__all__ = [
    "AGREEMENT_GOALS",
    "LAYER_TOLERANCE",
    "Divergence",
    "ParityReport",
    "ParityRow",
    "compare_outputs",
    "locate_divergence",
    "parity_matrix",
]

AGREEMENT_GOALS = {"fp32": 0.995, "int8": 0.98}
"""Top-1 agreement with the fp32 reference an export must reach, per precision."""
LAYER_TOLERANCE = {"fp32": 1e-3, "int8": 0.25}
"""Relative error (max |a-b| / max |a|) above which a layer's outputs count as diverged."""


def compare_outputs(reference: np.ndarray, outputs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Top-1 accuracy on labels ``y``, top-1 agreement with ``reference``, logit errors."""
    if reference.shape != outputs.shape:
        raise ConfigError(
            f"outputs of shape {outputs.shape} do not match the reference {reference.shape}"
        )
    err = np.abs(outputs.astype(np.float64) - reference.astype(np.float64))
    pred = outputs.argmax(1)
    return {
        "accuracy": float((pred == y).mean()),
        "agreement": float((pred == reference.argmax(1)).mean()),
        "max_logit_error": float(err.max()) if err.size else 0.0,
        "mean_logit_error": float(err.mean()) if err.size else 0.0,
    }


@dataclass(frozen=True)
class Divergence:
    """The first layer (ONNX tensor) whose outputs differ beyond the tolerance.

    ``index`` is the tensor's position among the reference graph's node outputs;
    ``relative_error`` is max |candidate - reference| / max |reference| on the inputs used.
    """

    tensor: str
    node: str
    op_type: str
    index: int
    relative_error: float
    compared: int

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def locate_divergence(
    reference_onnx: Path,
    runtime: Runtime,
    artifact: Path,
    x: np.ndarray,
    tolerance: float,
) -> Divergence | None:
    """Run the reference ONNX graph (ONNX Runtime) and ``artifact`` (its runtime) up to every
    layer on ``x`` and return the first layer, in the reference's order, whose relative error
    exceeds ``tolerance``; ``None`` if none does (or the runtime exposes no layers)."""
    if runtime.probe is None:
        return None
    model = onnx.load(str(reference_onnx))
    names = node_outputs(model)
    producer = {o: n for n in model.graph.node for o in n.output}
    batch = np.ascontiguousarray(x, dtype=np.float32)
    assert ONNX_RUNTIME.probe is not None
    ref = ONNX_RUNTIME.probe(reference_onnx, names)(batch)
    cand = runtime.probe(artifact, names)(batch)
    compared = 0
    for i, name in enumerate(names):
        a, b = ref.get(name), cand.get(name)
        if a is None or b is None or a.shape != b.shape or not np.issubdtype(a.dtype, np.floating):
            continue
        compared += 1
        scale = float(np.abs(a).max()) if a.size else 0.0
        rel = float(np.abs(a.astype(np.float64) - b).max()) / (scale + 1e-6) if a.size else 0.0
        if rel > tolerance:
            node = producer[name]
            return Divergence(name, node.name, node.op_type, i, rel, compared)
    return None


@dataclass(frozen=True)
class ParityRow:
    """One (runtime, precision) on the test set; ``error`` set (one line) when it failed."""

    runtime: str
    precision: str
    goal: float
    accuracy: float | None = None
    agreement: float | None = None
    max_logit_error: float | None = None
    mean_logit_error: float | None = None
    divergence: Divergence | None = None
    measurement: RuntimeMeasurement | None = None
    artifact: str | None = None
    error: str | None = None

    @property
    def met(self) -> bool:
        return self.agreement is not None and self.agreement >= self.goal

    def to_json(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            "precision": self.precision,
            "goal": self.goal,
            "met": self.met,
            "accuracy": self.accuracy,
            "agreement": self.agreement,
            "max_logit_error": self.max_logit_error,
            "mean_logit_error": self.mean_logit_error,
            "divergence": None if self.divergence is None else self.divergence.to_json(),
            "measurement": None if self.measurement is None else self.measurement.to_json(),
            "artifact": self.artifact,
            "error": self.error,
        }


@dataclass(frozen=True)
class ParityReport:
    """The matrix plus the reference: its accuracy and what it is (``torch`` or ``onnx``)."""

    reference: str
    reference_accuracy: float
    samples: int
    rows: list[ParityRow] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "reference_accuracy": self.reference_accuracy,
            "samples": self.samples,
            "rows": [r.to_json() for r in self.rows],
        }

    def row(self, runtime: str, precision: str) -> ParityRow:
        for r in self.rows:
            if r.runtime == runtime and r.precision == precision:
                return r
        raise KeyError(f"no parity row for {runtime}/{precision}")

    def table(self) -> list[str]:
        """The matrix as aligned text lines (for the CLI)."""
        lines = [
            f"reference {self.reference}: accuracy {self.reference_accuracy:.4f} "
            f"on {self.samples} test samples",
            f"{'runtime':<12} {'prec':<5} {'acc':>7} {'agree':>7} {'goal':>6} {'max err':>9} "
            f"{'KiB':>8} {'p50 ms':>8} {'p95 ms':>8} {'peak MiB':>8}  diverges at",
        ]
        for r in self.rows:
            if r.error is not None:
                lines.append(f"{r.runtime:<12} {r.precision:<5} failed: {r.error}")
                continue
            m = r.measurement
            size = f"{m.file_bytes / 1024:8.1f}" if m else f"{'-':>8}"
            p50 = f"{m.latency.p50_ms:8.3f}" if m else f"{'-':>8}"
            p95 = f"{m.latency.p95_ms:8.3f}" if m else f"{'-':>8}"
            peak = m.peak_memory_bytes if m else None
            mem = f"{peak / 2**20:8.1f}" if peak is not None else f"{'-':>8}"
            div = "-" if r.divergence is None else f"{r.divergence.tensor} ({r.divergence.op_type})"
            lines.append(
                f"{r.runtime:<12} {r.precision:<5} {r.accuracy:7.4f} {r.agreement:7.4f} "
                f"{r.goal:6.3f} {r.max_logit_error:9.2e} {size} {p50} {p95} {mem}  {div}"
            )
        return lines


def _reference(source: ExportSource, x: np.ndarray) -> tuple[str, np.ndarray]:
    if source.model is not None:
        from edgeintel.models.train import predict_logits

        return "torch fp32", predict_logits(source.model, x)
    return "onnxruntime fp32", predict_all(ONNX_RUNTIME.load(source.onnx_path), x)


def _one(
    rt: Runtime,
    precision: str,
    source: ExportSource,
    reference: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    calib: np.ndarray | None,
    out_dir: Path,
    measure: dict[str, Any] | None,
) -> ParityRow:
    goal = AGREEMENT_GOALS[precision]
    try:
        rt.check_precision(precision)
        artifact = rt.export(source, out_dir / rt.name, precision, calib)
        outputs = predict_all(rt.load(artifact), x)
        stats = compare_outputs(reference, outputs, y)
        divergence = None
        if stats["agreement"] < goal:
            flipped = np.flatnonzero(outputs.argmax(1) != reference.argmax(1))[:32]
            divergence = locate_divergence(
                source.onnx_path, rt, artifact, x[flipped], LAYER_TOLERANCE[precision]
            )
        m = None if measure is None else measure_artifact(rt.name, artifact, x[:1], **measure)
    except EdgeIntelError as exc:
        return ParityRow(rt.name, precision, goal, error=str(exc).splitlines()[0])
    return ParityRow(
        rt.name,
        precision,
        goal,
        divergence=divergence,
        measurement=m,
        accuracy=stats["accuracy"],
        agreement=stats["agreement"],
        max_logit_error=stats["max_logit_error"],
        mean_logit_error=stats["mean_logit_error"],
        artifact=str(artifact),
    )


def parity_matrix(
    source: ExportSource,
    test_x: np.ndarray,
    test_y: np.ndarray,
    calib_x: np.ndarray | None = None,
    *,
    runtimes: Sequence[str] | None = None,
    precisions: Sequence[str] = PRECISIONS,
    out_dir: Path | None = None,
    measure: dict[str, Any] | None = None,
) -> ParityReport:
    """The parity matrix of ``source`` on the held-out ``test_x``/``test_y``.

    ``runtimes`` defaults to every registered one; int8 calibrates on ``calib_x`` (real
    training samples; int8 is skipped with a one-line error row without them). ``measure``
    (keyword arguments of ``measure_artifact``; ``None`` = skip) adds size, latency and
    peak memory. Artifacts go to ``out_dir`` (a temporary folder when ``None``).
    """
    names = list(runtimes) if runtimes is not None else RUNTIMES.names()
    for name in names:
        RUNTIMES.check(name)
    for p in precisions:
        if p not in AGREEMENT_GOALS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {p!r}")
    x = np.ascontiguousarray(test_x, dtype=np.float32)
    y = np.asarray(test_y)
    kind, reference = _reference(source, x)
    rows: list[ParityRow] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(out_dir) if out_dir is not None else Path(tmp)
        for name in names:
            try:
                rt = get_runtime(name)
            except EdgeIntelError as exc:  # a missing extra: one row per precision says so
                msg = str(exc).splitlines()[0]
                rows.extend(ParityRow(name, p, AGREEMENT_GOALS[p], error=msg) for p in precisions)
                continue
            for p in precisions:
                calib = calib_x if p != "fp32" else None
                rows.append(_one(rt, p, source, reference, x, y, calib, base / p, measure))
    accuracy = float((reference.argmax(1) == y).mean())
    return ParityReport(kind, accuracy, len(y), rows)
