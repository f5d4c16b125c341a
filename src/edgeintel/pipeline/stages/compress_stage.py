"""The ``compress`` stage: one compressed artifact per device profile of the scenario, in the
runtime the profile names (ONNX by default; ``runtimes_delivery`` for the others).

Which data compression may fit on depends on where the model came from. A
centrally trained model already saw the pooled training split, so fine-tuning
and calibration use it. An edge-trained model (federated / hierarchical) must
never meet the devices' samples centrally: its fine-tuning steps (QAT, after
pruning, low-rank, compact layers) run as federated rounds over the device
shards through the training engine (``settings.inference.compress.finetune_rounds``,
DP accounted in the same budget as training; see ``federated_finetune``), and
calibration and distillation use the server-held set (``data.server_fraction``)
only; without one, static int8 becomes dynamic int8 and distillation is left out.
Each artifact records which data each of its steps saw, by role. Every candidate
is measured by the task kind's metric (accuracy, RMSE, AUROC) on the validation split
(selection, ``max_metric_drop``) and the test split (reported, ``test_<metric>``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeintel.data.provenance import CENTRAL_TRAIN, DEVICE_SHARDS, NONE, SERVER_SET
from edgeintel.inference.devices import (
    calibration_free,
    choose_for_profiles,
    federated_space,
    front_rows,
    onnx_metric,
    pareto_figure,
    recipe_data_roles,
    search_space_for,
)
from edgeintel.inference.measure import MeasureConfig
from edgeintel.inference.recipe import Recipe
from edgeintel.inference.runtimes import DEFAULT_RUNTIME
from edgeintel.inference.search import run_candidates
from edgeintel.pipeline.core import RunContext, Stage, register_stage
from edgeintel.pipeline.sections import inference_section as _section  # noqa: F401  (registers the section)
from edgeintel.pipeline.stages.federated_finetune import (
    FederatedFinetuner,
    dp_ledger_epsilon,
)
from edgeintel.pipeline.stages.runtimes_delivery import (
    deliver_in_runtimes,
    record_runtimes,
    runtime_metric,
)
from edgeintel.training.scenario_train import resolve_mode

__all__ = ["CompressStage", "fit_data_for"]


def fit_data_for(
    ctx: RunContext,
) -> tuple[tuple[np.ndarray, np.ndarray] | None, dict[str, Any]]:
    """The (x, y) compression may calibrate (and centrally fine-tune) on, and the roles record.

    Returns ``None`` when nothing may be fitted centrally (edge-trained model, no
    server-held set). ``roles["fine_tuning"]`` is where fine-tuning runs: device
    shards via federated rounds after edge training (``finetune_rounds`` > 0).
    """
    source = ctx.model_source
    roles: dict[str, Any] = {
        "model_trained_by": source,
        "model_trained_on": CENTRAL_TRAIN if source == "central" else DEVICE_SHARDS,
        "selection": "validation split",
        "reported": "test split",
    }
    if source == "central":
        fit = ctx.train_arrays()
        roles.update(fine_tuning=CENTRAL_TRAIN, calibration=CENTRAL_TRAIN)
        return fit, {**roles, "fit_samples": len(fit[1])}
    federated = ctx.scenario.settings.inference.compress.finetune_rounds > 0
    x_s, y_s = ctx.server_arrays()
    if len(y_s) == 0:
        roles.update(
            fine_tuning=DEVICE_SHARDS if federated else NONE,
            calibration=NONE,
            note="edge-trained model and no server-held set (data.server_fraction = 0): "
            + ("fine-tuning only as federated rounds over the device shards, dynamic int8 "
               "instead of static, no distillation"
               if federated else "only calibration-free recipes (fp32, dynamic int8)")
            + "; no device sample is used centrally",
        )  # fmt: skip
        return None, {**roles, "fit_samples": 0}
    fit = (x_s, y_s)
    roles.update(fine_tuning=DEVICE_SHARDS if federated else SERVER_SET, calibration=SERVER_SET)
    return fit, {**roles, "fit_samples": len(fit[1])}


def _test_acc(test_acc: dict[str, float], profile: str, choice: Any, runtime: str) -> float:
    """The chosen candidate's test metric (measured in the profile's runtime)."""
    if runtime != DEFAULT_RUNTIME:
        return test_acc[f"{profile}@{runtime}"]
    return test_acc[choice.search.chosen.label]


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
        kind = ctx.task_kind()
        fit, roles = fit_data_for(ctx)
        space = search_space_for(settings)
        finetuner: FederatedFinetuner | None = None
        if roles["fine_tuning"] == DEVICE_SHARDS:
            finetuner = FederatedFinetuner(ctx, settings.finetune_rounds)
            space = federated_space(space, server_set=fit is not None)
        elif fit is None:
            space = calibration_free(space)
        calib_x = None if fit is None else fit[0][:256]
        # without central fitting data, compress() needs an (x, y) only for shapes: with
        # a finetuner and no distillation / calibration in the space, nothing fits on it
        train_data = fit if fit is not None else (x_val, y_val)

        def roles_of(recipe: Recipe) -> dict[str, str]:
            return recipe_data_roles(recipe, roles["calibration"], roles["fine_tuning"])

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
                    cache=ctx.compress_cache,
                    finetuner=finetuner,
                    task=kind,
                )
                advance()
                ctx.log(f"compress: measured {recipe.label()} ({i}/{len(space)})")
            test_acc = {
                r.recipe.name: onnx_metric(r.artifact.path, x_te, y_te, kind) for r in results
            }
            measure = MeasureConfig(runs=inf.latency_runs, warmup=inf.warmup_runs)
            delivery = deliver_in_runtimes(ctx, results, (x_val, y_val), calib_x, measure, kind)
            choices = choose_for_profiles(
                results,
                dict(sc.device_profiles),
                settings,
                ctx.run_dir / "compress",
                extra={"accuracy_split": "validation"},
                extra_for=lambda r: {"data_roles": {**roles, **roles_of(r.recipe)}},
                by_runtime={k: v.results for k, v in delivery.items()},
            )
            for name, choice in choices.items():  # the test metric in the profile's runtime
                rt_name = sc.device_profiles[name].runtime
                if rt_name != DEFAULT_RUNTIME and choice.search.chosen is not None:
                    test_acc[f"{name}@{rt_name}"] = runtime_metric(
                        rt_name, choice.artifact_path, x_te, y_te, kind
                    )
            advance()
        record_runtimes(ctx, choices, delivery, calib_x, Path(results[0].stages[0].onnx_path))
        ctx.compressed_artifacts = {k: str(v.artifact_path) for k, v in choices.items()}
        base = results[0].baseline
        metric, test_key = kind.metric, f"test_{kind.metric}"
        ctx.results["compression"] = {
            "search_space": settings.search_space,
            "objective": settings.objective,
            "metric": metric,
            "higher_is_better": kind.higher_is_better,
            "data_roles": roles,
            "baseline": {
                metric: base.metric_value,
                test_key: onnx_metric(results[0].stages[0].onnx_path, x_te, y_te, kind),
                "onnx_bytes": base.onnx_bytes,
                "p50_ms_here": base.latency.p50_ms,
            },
            "candidates": [
                {
                    **r.summary_json(),
                    test_key: test_acc[r.recipe.name],
                    "data_roles": roles_of(r.recipe),
                }
                for r in results
            ],
            "per_profile": {
                k: {
                    **v.to_json(),
                    "runtime": sc.device_profiles[k].runtime,
                    test_key: _test_acc(test_acc, k, v, sc.device_profiles[k].runtime),
                    "data_roles": roles_of(v.search.chosen.result.recipe),
                }
                for k, v in choices.items()
                if v.search.chosen is not None
            },
            "summary": {
                f"artifact for {k}": f"{v.search.chosen.label} in "
                f"{sc.device_profiles[k].runtime} (test {metric} "
                f"{_test_acc(test_acc, k, v, sc.device_profiles[k].runtime):.4g}, validation "
                f"{v.search.chosen.measurement.metric_value:.4g}, "
                f"{v.search.chosen.latency_ms:.3g} ms, "
                f"{v.search.chosen.measurement.onnx_bytes / 1024:.1f} KiB)"
                for k, v in choices.items()
                if v.search.chosen is not None
            },
        }
        if finetuner is not None:
            ft: dict[str, Any] = {
                "data": DEVICE_SHARDS,
                "rounds_per_step": settings.finetune_rounds,
                "mode": str(resolve_mode(sc)),
                "runs": finetuner.runs,
            }
            eps = dp_ledger_epsilon(ctx)
            if eps is not None:
                ledger = ctx.dp_ledger
                assert ledger is not None
                ft["privacy"] = {
                    "epsilon": eps,
                    "delta": ledger.delta,
                    "epsilon_training_only": ledger.phases[0]["epsilon_after"],
                    "covers": "edge training (+ its clean reference run, when an attack is "
                    "configured) + every federated fine-tuning run (one dp-accounting RDP "
                    "accountant composes them all)",
                    "phases": ledger.phases,
                }
                # the run's one budget: the edge-training section reports the total too
                if ctx.edge_dp_record is not None:
                    ctx.edge_dp_record["epsilon_with_fine_tuning"] = eps
            ctx.results["compression"]["federated_fine_tuning"] = ft
        for name, choice in choices.items():
            ctx.results["compression"]["per_profile"][name]["table"] = front_rows(choice.search)
            ctx.add_figure(
                "compression",
                f"Pareto front for {name}",
                pareto_figure(choice.search, f"{sc.name}: candidates on {name}"),
                f"Validation {metric} (selection) vs latency on {name} (this machine's "
                f"{sc.device_profiles[name].runtime} p50 / compute speed "
                f"{sc.device_profiles[name].compute_speed:g}); "
                "marker area ~ artifact size, green = meets the budget, black edge = Pareto front "
                f"({metric}, latency, size), red ring = chosen.",
            )
