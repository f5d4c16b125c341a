"""The ``compress`` stage: one compressed ONNX artifact per device profile of the scenario."""

from __future__ import annotations

from edgeintel.inference.devices import (
    choose_for_profiles,
    front_rows,
    pareto_figure,
    search_space_for,
)
from edgeintel.inference.measure import MeasureConfig
from edgeintel.inference.search import run_candidates
from edgeintel.pipeline import inference_section as _section  # noqa: F401  (registers the section)
from edgeintel.pipeline.core import RunContext, Stage, register_stage

__all__ = ["CompressStage"]


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
        x_tr, y_tr = ctx.train_arrays()
        x_te, y_te = ctx.test_arrays()
        space = search_space_for(settings)
        with ctx.task("Compressing (candidates)", total=len(space) + 1) as advance:
            results = []
            for i, recipe in enumerate(space, 1):
                results += run_candidates(
                    ctx.model,
                    [recipe],
                    (x_tr, y_tr),
                    x_tr[:256],
                    eval_data=(x_te, y_te),
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
            choices = choose_for_profiles(
                results, dict(sc.device_profiles), settings, ctx.run_dir / "compress"
            )
            advance()
        ctx.state["compressed_artifacts"] = {k: str(v.artifact_path) for k, v in choices.items()}
        base = results[0].baseline
        ctx.results["compression"] = {
            "search_space": settings.search_space,
            "objective": settings.objective,
            "baseline": {
                "accuracy": base.accuracy,
                "onnx_bytes": base.onnx_bytes,
                "p50_ms_here": base.latency.p50_ms,
            },
            "candidates": [r.summary_json() for r in results],
            "per_profile": {k: v.to_json() for k, v in choices.items()},
            "summary": {
                f"artifact for {k}": f"{v.search.chosen.label} (acc "
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
                f"Held-out accuracy vs latency on {name} (this machine's ONNX Runtime p50 / "
                f"compute speed {sc.device_profiles[name].compute_speed:g}); marker area ~ "
                "ONNX size, green = meets the budget, black edge = Pareto front (accuracy, "
                "latency, size), red ring = chosen.",
            )
