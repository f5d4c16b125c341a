"""The compress stage's device-runtime part: candidates in each profile's runtime, and the
parity matrix of the trained model (results ``runtimes``, rendered by ``runtimes_section``).

A profile that names a runtime other than ONNX Runtime is judged on the compression
candidates exported to and measured in that runtime (``inference.runtimes.deliver``) and
receives its artifact in that format. The parity matrix runs the trained model through
every runtime the profiles name (``settings.inference.compress.parity: profiles``, always
with ONNX Runtime) or every registered one (``all``), fp32 and int8, on the whole test split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeintel.inference.measure import MeasureConfig
from edgeintel.inference.runtimes import DEFAULT_RUNTIME, RUNTIMES
from edgeintel.inference.runtimes.base import ExportSource, get_runtime, predict_all
from edgeintel.inference.runtimes.deliver import (
    RuntimeCandidates,
    precision_of,
    runtime_candidates,
)
from edgeintel.pipeline.core import RunContext
from edgeintel.pipeline.sections import runtimes_section as _section  # noqa: F401  (registers it)
from edgeintel.tasks import TaskKind

__all__ = [
    "deliver_in_runtimes",
    "device_runtime_artifacts",
    "parity_runtimes",
    "record_runtimes",
    "runtime_metric",
]


def parity_runtimes(mode: str, profile_runtimes: set[str]) -> list[str]:
    """The runtimes the parity matrix covers: ``all`` registered, ``profiles`` (+ ONNX
    Runtime), or none (``off``); in the registry's order."""
    if mode == "off":
        return []
    wanted = set(RUNTIMES.names()) if mode == "all" else {DEFAULT_RUNTIME, *profile_runtimes}
    return [n for n in RUNTIMES.names() if n in wanted]


def runtime_metric(
    runtime: str, artifact: Path, x: np.ndarray, y: np.ndarray, task: TaskKind
) -> float:
    """The headline metric of ``task`` for ``artifact`` run by ``runtime`` on ``(x, y)``
    (nan on an empty set or where undefined)."""
    if len(y) == 0:
        return float("nan")
    out = predict_all(get_runtime(runtime).load(artifact), x)
    return float(task.evaluate(task.predict(out, x), y).get(task.metric, float("nan")))


def deliver_in_runtimes(
    ctx: RunContext,
    results: list[Any],
    val: tuple[np.ndarray, np.ndarray],
    calib_x: np.ndarray | None,
    measure: MeasureConfig,
    task: TaskKind,
) -> dict[str, RuntimeCandidates]:
    """The candidates of every non-default runtime a device profile names, measured there."""
    names = sorted({p.runtime for p in ctx.scenario.device_profiles.values()} - {DEFAULT_RUNTIME})
    out = {}
    for name in names:
        ctx.log(f"compress: exporting {len(results)} candidates to {name}")
        out[name] = runtime_candidates(
            results, name, val, calib_x, measure, ctx.run_dir / "compress" / "runtimes", task
        )
    return out


def record_runtimes(
    ctx: RunContext,
    choices: dict[str, Any],
    delivery: dict[str, RuntimeCandidates],
    fit_x: np.ndarray | None,
    fp32_onnx: Path,
) -> None:
    """Write results ``runtimes``: what each profile receives and the parity matrix of the
    trained model (``fp32_onnx`` its ONNX export; int8 calibrates on ``fit_x``)."""
    from edgeintel.inference.parity import parity_matrix

    sc = ctx.scenario
    settings = sc.settings.inference
    profiles = {
        name: {
            "runtime": sc.device_profiles[name].runtime,
            "artifact": str(c.artifact_path),
            "format": c.artifact_path.suffix,
            "chosen": c.search.chosen.label if c.search.chosen is not None else None,
            "precision": (precision_of(c.search.chosen.result.recipe) if
                          c.search.chosen is not None else None),
        }
        for name, c in choices.items()
    }  # fmt: skip
    record: dict[str, Any] = {
        "profiles": profiles,
        "export_failures": {k: v.failed for k, v in delivery.items() if v.failed},
    }
    names = parity_runtimes(
        settings.compress.parity, {p.runtime for p in sc.device_profiles.values()}
    )
    kind = sc.task.task_kind()
    if names and kind.metric != "accuracy":
        record["parity_skipped"] = (
            f"the parity matrix compares top-1 labels; the {kind.name} task kind has none"
        )
    elif names:
        assert ctx.model is not None
        x_te, y_te = ctx.test_arrays()
        source = ExportSource(fp32_onnx, tuple(int(d) for d in x_te.shape[1:]), ctx.model)
        ctx.log(f"runtimes: parity matrix on {len(y_te)} test samples ({', '.join(names)})")
        report = parity_matrix(
            source,
            x_te,
            y_te,
            fit_x,
            runtimes=names,
            out_dir=ctx.run_dir / "runtimes",
            measure={"runs": settings.latency_runs, "warmup": settings.warmup_runs},
        )
        record["parity"] = report.to_json()
    ctx.results["runtimes"] = record


def device_runtime_artifacts(
    ctx: RunContext, runtimes: set[str], onnx: Path, folder: Path
) -> dict[str, Path]:
    """The deployed fp32 model (``onnx``, the repository's verified copy, and the trained
    PyTorch model) exported once to each non-default runtime in ``runtimes``, so device agents
    whose profile names it run the same model as the servers, in their own runtime."""
    out: dict[str, Path] = {}
    for name in sorted(runtimes - {DEFAULT_RUNTIME}):
        x_te, _ = ctx.test_arrays()
        source = ExportSource(onnx, tuple(int(d) for d in x_te.shape[1:]), ctx.model)
        out[name] = get_runtime(name).export(source, folder / name, "fp32", None)
        ctx.log(f"runtime: the deployed model exported to {name} for its devices")
    return out
