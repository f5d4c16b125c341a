"""The ``compress`` stage: one compressed ONNX artifact per device profile of the scenario.

Which data compression may fit on depends on where the model came from. A
centrally trained model already saw the pooled training split, so fine-tuning
and calibration use it. An edge-trained model (federated / hierarchical) must
never meet the devices' samples centrally: it is fine-tuned and calibrated on
the server-held set (``data.server_fraction``) only, and without one only
calibration-free recipes (fp32, dynamic int8) run. Every candidate is measured
on the validation split (selection) and the test split (reported accuracy).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeintel.data.provenance import CENTRAL_TRAIN, DEVICE_SHARDS, NONE, SERVER_SET
from edgeintel.inference.devices import (
    calibration_free,
    choose_for_profiles,
    front_rows,
    onnx_accuracy,
    pareto_figure,
    search_space_for,
)
from edgeintel.inference.measure import MeasureConfig
from edgeintel.inference.search import run_candidates
from edgeintel.pipeline import inference_section as _section  # noqa: F401  (registers the section)
from edgeintel.pipeline.core import RunContext, Stage, register_stage

__all__ = ["CompressStage", "fit_data_for"]


def fit_data_for(
    ctx: RunContext,
) -> tuple[tuple[np.ndarray, np.ndarray] | None, dict[str, Any]]:
    """The (x, y) compression may fine-tune and calibrate on, and the roles record.

    Returns ``None`` when nothing may be fitted (edge-trained model, no server-held set).
    """
    source = ctx.state.get("model_source", "central")
    roles: dict[str, Any] = {
        "model_trained_by": source,
        "model_trained_on": CENTRAL_TRAIN if source == "central" else DEVICE_SHARDS,
        "selection": "validation split",
        "reported": "test split",
    }
    if source == "central":
        fit = ctx.train_arrays()
        roles.update(fine_tuning=CENTRAL_TRAIN, calibration=CENTRAL_TRAIN)
    else:
        x_s, y_s = ctx.server_arrays()
        if len(y_s) == 0:
            roles.update(
                fine_tuning=NONE,
                calibration=NONE,
                note="edge-trained model and no server-held set (data.server_fraction = 0): "
                "only calibration-free recipes (fp32, dynamic int8); no device sample is "
                "used centrally",
            )
            return None, {**roles, "fit_samples": 0}
        fit = (x_s, y_s)
        roles.update(fine_tuning=SERVER_SET, calibration=SERVER_SET)
    return fit, {**roles, "fit_samples": len(fit[1])}


@register_stage
class CompressStage(Stage):
    """Search compression recipes on the trained model and pick one per device profile."""

    name = "compress"
    order = 55
    title = "Compression (per device profile)"

    def enabled(self, ctx: RunContext) -> bool:
        return ctx.scenario.settings.inference.compress.enabled

    def run(self, ctx: RunContext) -> None:
        if ctx.model is None:
            raise RuntimeError("no trained model to compress")
        ds = ctx.require_dataset()
        sc = ctx.scenario
        inf = sc.settings.inference
        settings = inf.compress
        x_te, y_te = ctx.test_arrays()
        x_val, y_val = ctx.val_arrays()
        fit, roles = fit_data_for(ctx)
        space = search_space_for(settings)
        if fit is None:
            space = calibration_free(space)
        calib_x = None if fit is None else fit[0][:256]
        # without fitting data compress() would carve a holdout; nothing here needs one
        train_data = fit if fit is not None else (x_val, y_val)
        with ctx.task("Compressing (candidates)", total=len(space) + 1) as advance:
            results = []
            for i, recipe in enumerate(space, 1):
                results += run_candidates(
                    ctx.model,
                    [recipe],
                    train_data,
                    calib_x,
                    # selection (recipe per device, min_accuracy) on validation only
                    eval_data=(x_val, y_val),
                    measure=MeasureConfig(runs=inf.latency_runs, warmup=inf.warmup_runs),
                    labels=ds.classes,
                    family=sc.task.model,
                    width=sc.task.width,
                    workdir=ctx.run_dir / "compress" / "candidates",
                    seed=sc.seed,
                    cache=ctx.state.setdefault("compress_cache", {}),
                )
                advance()
                ctx.log(f"compress: measured {recipe.label()} ({i}/{len(space)})")
            test_acc = {r.recipe.name: onnx_accuracy(r.artifact.path, x_te, y_te) for r in results}
            choices = choose_for_profiles(
                results,
                dict(sc.device_profiles),
                settings,
                ctx.run_dir / "compress",
                extra={"data_roles": roles, "accuracy_split": "validation"},
            )
            advance()
        ctx.state["compressed_artifacts"] = {k: str(v.artifact_path) for k, v in choices.items()}
        base = results[0].baseline
        ctx.results["compression"] = {
            "search_space": settings.search_space,
            "objective": settings.objective,
            "data_roles": roles,
            "baseline": {
                "accuracy": base.accuracy,
                "test_accuracy": onnx_accuracy(results[0].stages[0].onnx_path, x_te, y_te),
                "onnx_bytes": base.onnx_bytes,
                "p50_ms_here": base.latency.p50_ms,
            },
            "candidates": [
                {**r.summary_json(), "test_accuracy": test_acc[r.recipe.name]} for r in results
            ],
            "per_profile": {
                k: {**v.to_json(), "test_accuracy": test_acc[v.search.chosen.label]}
                for k, v in choices.items()
                if v.search.chosen is not None
            },
            "summary": {
                f"artifact for {k}": f"{v.search.chosen.label} (test acc "
                f"{test_acc[v.search.chosen.label]:.3f}, validation "
                f"{v.search.chosen.measurement.accuracy:.3f}, "
                f"{v.search.chosen.latency_ms:.3g} ms, "
                f"{v.search.chosen.measurement.onnx_bytes / 1024:.1f} KiB)"
                for k, v in choices.items()
                if v.search.chosen is not None
            },
        }
        for name, choice in choices.items():
            ctx.results["compression"]["per_profile"][name]["table"] = front_rows(choice.search)
            ctx.add_figure(
                "compression",
                f"Pareto front for {name}",
                pareto_figure(choice.search, f"{sc.name}: candidates on {name}"),
                f"Validation accuracy (selection) vs latency on {name} (this machine's ONNX "
                f"Runtime p50 / compute speed {sc.device_profiles[name].compute_speed:g}); "
                "marker area ~ ONNX size, green = meets the budget, black edge = Pareto front "
                "(accuracy, latency, size), red ring = chosen.",
            )
