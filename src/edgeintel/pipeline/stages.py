"""The foundation's stages: data -> central baseline training -> ONNX export -> evaluation."""

from __future__ import annotations

import numpy as np

from edgeintel.data import label_skew, load_data, partition, train_test_split
from edgeintel.inference.latency import measure_latency, scale_latency
from edgeintel.models import build_model, count_params, export_onnx, make_session, onnx_predict
from edgeintel.models.train import TrainConfig, evaluate_accuracy, predict_logits, train_model
from edgeintel.pipeline.core import RunContext, Stage, register_stage
from edgeintel.report import plots

__all__ = ["DataStage", "EvaluateStage", "ExportStage", "TrainStage"]


@register_stage
class DataStage(Stage):
    """Load the dataset, hold out a test set, partition the rest across devices."""

    name = "data"
    order = 10
    title = "Data"

    def run(self, ctx: RunContext) -> None:
        sc = ctx.scenario
        with ctx.task("Loading data", total=3) as advance:
            ds = load_data(sc.data, seed=sc.seed)
            advance()
            train_idx, test_idx = train_test_split(ds.y, sc.data.test_fraction, seed=sc.seed)
            advance()
            ctx.devices = sc.expand_devices()
            p = sc.data.partition
            local = partition(
                ds.y[train_idx],
                len(ctx.devices),
                kind=str(p.kind),
                seed=sc.seed,
                groups=None if ds.groups is None else ds.groups[train_idx],
                alpha=p.alpha,
                min_samples=p.min_samples,
            )
            advance()
        ctx.dataset, ctx.train_idx, ctx.test_idx = ds, train_idx, test_idx
        ctx.device_parts = [train_idx[part] for part in local]
        counts = np.stack(
            [np.bincount(ds.y[idx], minlength=ds.num_classes) for idx in ctx.device_parts]
        )
        ctx.results["data"] = {
            **ds.summary(),
            "description": ds.description,
            "train_samples": len(train_idx),
            "test_samples": len(test_idx),
            "partition": {
                "kind": str(p.kind),
                "alpha": p.alpha if str(p.kind) in {"dirichlet", "quantity"} else None,
                "devices": len(ctx.devices),
                "label_skew": round(label_skew(local, ds.y[train_idx]), 4),
                "samples_per_device": counts.sum(1).tolist(),
                "class_counts_per_device": counts.tolist(),
            },
        }
        ctx.add_figure(
            "data",
            "Per-device data distribution",
            plots.stacked_class_bars(counts, ds.classes, [d.name for d in ctx.devices]),
            f"{p.kind} partition of {len(train_idx)} training samples over "
            f"{len(ctx.devices)} devices "
            f"(label skew {ctx.results['data']['partition']['label_skew']:.2f}).",
        )


@register_stage
class TrainStage(Stage):
    """Train the task's model centrally: the baseline every edge strategy is compared with."""

    name = "train"
    order = 20
    title = "Training (central baseline)"

    def run(self, ctx: RunContext) -> None:
        ds = ctx.require_dataset()
        sc = ctx.scenario
        settings = sc.settings.training
        cfg = TrainConfig(
            epochs=settings.epochs,
            batch_size=settings.batch_size,
            lr=settings.lr,
            weight_decay=settings.weight_decay,
            threads=None,  # the pipeline's thread limit (settings.threads)
        )
        model = build_model(
            sc.task.model, ds.sample_shape, ds.num_classes, width=sc.task.width, seed=sc.seed
        )
        x_tr, y_tr = ctx.train_arrays()
        x_te, y_te = ctx.test_arrays()
        with ctx.task("Training baseline (epochs)", total=cfg.epochs) as advance:
            history = train_model(
                model,
                x_tr,
                y_tr,
                cfg,
                seed=sc.seed,
                x_val=x_te,
                y_val=y_te,
                on_epoch=lambda _rec: advance(),
            )
        ctx.model = model
        ctx.results["training"] = {
            "mode": "central",
            "config": {
                "epochs": cfg.epochs,
                "batch_size": cfg.batch_size,
                "lr": cfg.lr,
                "weight_decay": cfg.weight_decay,
            },
            "history": [h.to_json() for h in history],
            "final_accuracy": history[-1].val_accuracy,
        }
        ctx.add_figure(
            "training",
            "Training curve",
            plots.training_curve(history),
            "Loss and accuracy per epoch of the central baseline (held-out test accuracy).",
        )


@register_stage
class ExportStage(Stage):
    """Export the trained model to ONNX with its metadata record."""

    name = "export"
    order = 40
    title = "Model"

    def run(self, ctx: RunContext) -> None:
        ds = ctx.require_dataset()
        if ctx.model is None:
            raise RuntimeError("no trained model to export")
        with ctx.task("Exporting to ONNX", total=1) as advance:
            artifact = export_onnx(
                ctx.model,
                ds.sample_shape,
                ctx.run_dir / "model.onnx",
                ds.classes,
                extra={"family": ctx.scenario.task.model, "dataset": ds.name},
            )
            advance()
        ctx.artifact = artifact
        trained_by = ctx.results.get("edge_training", {}).get("mode") or "central"
        ctx.results["model"] = {
            "family": ctx.scenario.task.model,
            "trained_by": trained_by,
            "width": ctx.scenario.task.width,
            "params": count_params(ctx.model),
            "onnx": artifact.to_json(),
        }


@register_stage
class EvaluateStage(Stage):
    """Accuracy of the ONNX model and its ONNX Runtime latency here and on each device profile."""

    name = "evaluate"
    order = 50
    title = "Evaluation"

    def run(self, ctx: RunContext) -> None:
        if ctx.artifact is None or ctx.model is None:
            raise RuntimeError("no exported model to evaluate")
        x_te, y_te = ctx.test_arrays()
        inf = ctx.scenario.settings.inference
        with ctx.task("Measuring ONNX Runtime", total=2) as advance:
            session = make_session(ctx.artifact.path)
            onnx_logits = onnx_predict(session, x_te)
            torch_logits = predict_logits(ctx.model, x_te)
            advance()
            stats = measure_latency(
                session, x_te[:1], runs=inf.latency_runs, warmup=inf.warmup_runs
            )
            advance()
        per_profile = {}
        for name, prof in ctx.scenario.device_profiles.items():
            s = scale_latency(stats, prof.compute_speed)
            per_profile[name] = {
                "compute_speed": prof.compute_speed,
                "p50_ms": round(s.p50_ms, 4),
                "p95_ms": round(s.p95_ms, 4),
                # energy of one inference while computing: W * s = J -> mJ
                "energy_mj": round(prof.power_compute_w * s.p50_ms, 4),
            }
        ctx.results["evaluation"] = {
            "accuracy_torch": evaluate_accuracy(ctx.model, x_te, y_te),
            "accuracy_onnx": float((onnx_logits.argmax(1) == y_te).mean()),
            "onnx_max_abs_diff": float(np.abs(onnx_logits - torch_logits).max()),
            "latency_ms": {
                k: round(v, 4) if isinstance(v, float) else v for k, v in stats.to_json().items()
            },
            "per_profile": per_profile,
        }
        if per_profile:
            ctx.add_figure(
                "evaluation",
                "Inference latency per device profile",
                plots.bar_chart(
                    list(per_profile),
                    [v["p50_ms"] for v in per_profile.values()],
                    ylabel="p50 latency (ms)",
                ),
                "ONNX Runtime p50 at batch 1 on this machine, scaled by each profile's "
                "compute speed.",
            )
