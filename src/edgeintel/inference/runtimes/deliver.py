"""Compression candidates in a device's runtime: exported, run and timed there.

The compression search builds its candidates once, as ONNX files measured by ONNX Runtime.
A device profile that names another runtime judges them in its own runtime instead: each
candidate's model after its last PyTorch-level step (pruning, low-rank, QAT, distillation)
is exported to the runtime, at int8 with the runtime's own quantizer where the recipe ends
in an int8 step (ORT's static or dynamic quantizer otherwise), calibrated on the same real
samples; its task metric (``TaskKind``) is measured on the same validation split and its
batch-1 latency with the same stable-window protocol, through the runtime's API. The result is a
``CompressionResult`` whose last stage is that export, so the search (``select``) and the
per-profile choice treat it like any candidate.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgeintel.errors import EdgeIntelError, ModelError
from edgeintel.inference.base import TECHNIQUES, StageKind
from edgeintel.inference.compress import CompressionResult, StageResult
from edgeintel.inference.measure import MeasureConfig
from edgeintel.inference.recipe import Recipe
from edgeintel.inference.runtimes import DEFAULT_RUNTIME
from edgeintel.inference.runtimes.base import ExportSource, get_runtime, predict_all
from edgeintel.latency import scale_latency, time_calls
from edgeintel.onnx_files import file_sha256
from edgeintel.tasks import TaskKind, make_task

__all__ = ["QUANTIZERS", "RuntimeCandidates", "in_runtime", "precision_of", "runtime_candidates"]

QUANTIZERS = frozenset({"quantize_static", "quantize_dynamic"})
"""ONNX-level steps that make a candidate int8; a runtime applies its own int8 instead."""


def precision_of(recipe: Recipe) -> str:
    """``int8`` when ``recipe`` quantizes to int8, else ``fp32``."""
    return "int8" if any(s.technique in QUANTIZERS for s in recipe.steps) else "fp32"


def _export_source(result: CompressionResult) -> ExportSource:
    """The fp32 model after the candidate's last PyTorch-level step: its ONNX file and module."""
    last = 0
    for i, stage in enumerate(result.stages[1:], 1):
        if TECHNIQUES.get(stage.technique).kind == StageKind.TORCH:
            last = i
    onnx_path = Path(result.stages[last].onnx_path)
    return ExportSource(onnx_path, tuple(result.artifact.input_shape), result.torch_model)


def in_runtime(
    result: CompressionResult,
    runtime: str,
    eval_data: tuple[np.ndarray, np.ndarray],
    calibration: np.ndarray | None,
    measure: MeasureConfig,
    workdir: Path,
    task: TaskKind | None = None,
) -> CompressionResult:
    """``result`` exported to ``runtime`` and measured there (the metrics of ``task`` on
    ``eval_data``, batch-1 latency in ms, bytes of the artifact and its sidecars)."""
    rt = get_runtime(runtime)
    precision = precision_of(result.recipe)
    out_dir = workdir / rt.name / result.recipe.name
    artifact = rt.export(_export_source(result), out_dir, precision, calibration)
    predictor = rt.load(artifact)
    x, y = eval_data
    kind = task if task is not None else make_task("classification")
    metrics = kind.evaluate(kind.predict(predict_all(predictor, x), x), y) if len(y) else {}
    value = float(metrics.get(kind.metric, float("nan")))
    sample = np.ascontiguousarray(x[:1], dtype=np.float32)
    # the protocol ONNX Runtime candidates are timed with (measure_onnx)
    lat = time_calls(lambda: predictor.run(sample), measure.runs, measure.warmup)
    files = b"".join(p.read_bytes() for p in rt.files(artifact) if p.is_file())
    meas = dataclasses.replace(
        result.final,
        onnx_bytes=len(files),
        compressed_bytes=len(zlib.compress(files, 9)),
        metric_value=value,
        metrics={k: float(v) for k, v in metrics.items()},
        latency=lat,
        latency_scaled=scale_latency(lat, measure.compute_speed),
        compute_speed=measure.compute_speed,
    )
    stage = StageResult(
        f"export_{rt.name}",
        f"{rt.name} {precision}",
        {"runtime": rt.name, "precision": precision},
        str(artifact),
        meas,
        info={"notes": rt.notes, "peak_memory": "estimated from the ONNX graph"},
    )
    record = dataclasses.replace(
        result.artifact,
        path=str(artifact),
        sha256=file_sha256(artifact),
        bytes=len(files),
        extra={**result.artifact.extra, "runtime": rt.name, "precision": precision,
               "files": [p.name for p in rt.files(artifact)], kind.metric: value},
    )  # fmt: skip
    return CompressionResult(
        result.recipe, [*result.stages, stage], record, result.model, result.torch_model
    )


@dataclasses.dataclass
class RuntimeCandidates:
    """The candidates of one runtime; ``failed`` maps a recipe to why its export failed."""

    runtime: str
    results: list[CompressionResult]
    failed: dict[str, str]


def runtime_candidates(
    results: Sequence[CompressionResult],
    runtime: str,
    eval_data: tuple[np.ndarray, np.ndarray],
    calibration: np.ndarray | None,
    measure: MeasureConfig,
    workdir: Path,
    task: TaskKind | None = None,
) -> RuntimeCandidates:
    """Every candidate of ``results`` in ``runtime`` (ONNX Runtime: ``results`` as they are).

    A candidate the runtime cannot export (an op it lacks, a missing extra) is left out and
    its one-line reason kept; a runtime that exports none raises the first reason.
    """
    if runtime == DEFAULT_RUNTIME:
        return RuntimeCandidates(runtime, list(results), {})
    out: list[CompressionResult] = []
    failed: dict[str, str] = {}
    for r in results:
        try:
            out.append(in_runtime(r, runtime, eval_data, calibration, measure, workdir, task))
        except EdgeIntelError as exc:
            failed[r.recipe.name] = str(exc).splitlines()[0]
    if not out and failed:
        name, why = next(iter(failed.items()))
        raise ModelError(f"runtime {runtime!r} exported no compression candidate ({name}: {why})")
    return RuntimeCandidates(runtime, out, failed)
