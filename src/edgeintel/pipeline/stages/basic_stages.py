"""The foundation's stages: data -> central baseline training -> ONNX export -> evaluation."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeintel.data import Target, label_skew
from edgeintel.data.baselines import nearest_neighbour_predict
from edgeintel.data.device_data import derive_run_data
from edgeintel.data.provenance import (
    CENTRAL_TRAIN,
    DEVICE_SHARDS,
    chance_accuracy,
    split_record,
)
from edgeintel.latency import measure_latency, scale_latency
from edgeintel.models import count_params, export_onnx
from edgeintel.models.train import predict_logits, train_model
from edgeintel.onnx_files import make_session, onnx_predict
from edgeintel.pipeline.core import RunContext, Stage, register_stage

# importing a section's renderer registers it with the report (edgeintel.report.sections)
from edgeintel.pipeline.sections import data_section as _data_section  # noqa: F401
from edgeintel.pipeline.sections import inference_section as _inference_section  # noqa: F401
from edgeintel.pipeline.sections import training_section as _training_section  # noqa: F401
from edgeintel.report import plots
from edgeintel.report.task_plots import task_figures
from edgeintel.scenario import TrainingMode
from edgeintel.tasks import TaskKind
from edgeintel.training.scenario_train import resolve_mode

__all__ = ["DataStage", "EvaluateStage", "ExportStage", "TrainStage", "trivial_baseline"]


NEAREST = "1-nearest neighbour"


def strata_labels(ds: Any) -> list[str]:
    """Names of ``ds.strata``'s values: the classes, or a real target's quantile bins."""
    if ds.target is not Target.VALUE:
        return list(ds.classes)
    return [f"{ds.classes[0]} q{k + 1}" for k in range(int(ds.strata.max()) + 1)]


def trivial_baseline(
    kind: Any,
    ds: Any,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    seed: int = 0,
) -> dict[str, Any]:
    """The task kind's trivial baselines on the test targets, fitted on the training
    targets (``TaskKind.baselines``), and the best of them by the kind's headline metric.

    For class labels the 1-nearest-neighbour classifier on the samples (``ds.x`` as the
    run preprocessed it) is one more baseline (``data.baselines``): a model that does
    not beat it has learned nothing a lookup of the training set would not know.
    """
    y_tr, y_te = ds.y[train_idx], ds.y[test_idx]
    every = kind.baselines(y_tr, y_te)
    if getattr(ds, "target", None) is Target.LABEL and kind.metric == "accuracy" and len(train_idx):
        pred, n_ref = nearest_neighbour_predict(ds.x[train_idx], y_tr, ds.x[test_idx], seed=seed)
        every[NEAREST] = {**kind.evaluate(pred, y_te), "reference_samples": n_ref}
    scored = {n: m[kind.metric] for n, m in every.items()}
    pick = max if kind.higher_is_better else min
    name = pick(scored, key=lambda n: scored[n])
    return {"metric": kind.metric, "best": name, "value": scored[name], "all": every}


@register_stage
class DataStage(Stage):
    """Derive the run's data (``derive_run_data``): held-out sets, preprocessing, shards."""

    name = "data"
    order = 10
    title = "Data"

    def run(self, ctx: RunContext) -> None:
        sc = ctx.scenario
        spec = sc.data
        with ctx.task("Loading data", total=1) as advance:
            ctx.devices = sc.expand_devices()
            # the one derivation of a device's data (held-out sets, shards, standardisation
            # fitted on what the fitting party holds), shared with compress and the agents
            rd = derive_run_data(
                spec,
                sc.seed,
                len(ctx.devices),
                edge=resolve_mode(sc) is not TrainingMode.CENTRAL,
                kind=sc.task.kind,
            )
            advance()
        ds, splits = rd.dataset, rd.splits
        train_idx, test_idx = splits.train, splits.test
        ctx.standardizer = rd.standardizer
        for message in rd.warnings:  # e.g. features on very different scales, unscaled
            ctx.console.print(f"[yellow]warning:[/] {message}")
        p = spec.partition
        ctx.val_idx, ctx.server_idx = splits.val, splits.server
        ctx.data_split = split_record(spec, sc.seed, splits, ds.name)
        ctx.dataset, ctx.train_idx, ctx.test_idx = ds, train_idx, test_idx
        ctx.device_parts = list(rd.parts)
        # real-valued targets are counted by quantile bin (Dataset.strata), labels by class
        strata, strata_names = ds.strata, strata_labels(ds)
        counts = np.stack(
            [np.bincount(strata[idx], minlength=len(strata_names)) for idx in ctx.device_parts]
        )
        labelled = ds.target is not Target.VALUE
        ctx.results["data"] = {
            **ds.summary(),
            "description": ds.description,
            "train_samples": len(train_idx),
            "test_samples": len(test_idx),
            "split": {
                **splits.to_json(),
                "chance_accuracy": chance_accuracy(ds.y[test_idx]) if labelled else None,
            },
            "trivial_baseline": trivial_baseline(
                sc.task.task_kind(), ds, train_idx, test_idx, sc.seed
            ),
            "standardization": rd.preprocessing,
            "feature_scale": rd.scale,
            "partition": {
                "kind": str(p.kind),
                "alpha": p.alpha if str(p.kind) in {"dirichlet", "quantity"} else None,
                "devices": len(ctx.devices),
                "label_skew": round(
                    label_skew(
                        [np.searchsorted(train_idx, part) for part in rd.parts],
                        strata[train_idx],
                    ),
                    4,
                ),
                "samples_per_device": counts.sum(1).tolist(),
                "class_counts_per_device": counts.tolist(),
            },
        }
        if rd.warnings:
            ctx.results["data"]["warnings"] = list(rd.warnings)
        ctx.add_figure(
            "data",
            "Per-device data distribution",
            plots.stacked_class_bars(counts, strata_names, [d.name for d in ctx.devices]),
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
        cfg = settings.central_config()  # the pipeline's thread limit (settings.threads)
        model = ctx.fresh_model()
        kind = sc.task.task_kind()
        x_tr, y_tr = ctx.train_arrays()
        x_te, y_te = ctx.test_arrays()

        def on_epoch(rec: Any) -> None:
            advance()
            value = rec.val_accuracy if rec.val_metric is None else rec.val_metric
            val = "" if value is None else f", test {kind.metric} {value:.4g}"
            ctx.log(f"central baseline: epoch {rec.epoch}/{cfg.epochs} loss {rec.loss:.4f}{val}")

        with ctx.task("Training baseline (epochs)", total=cfg.epochs) as advance:
            history = train_model(
                model,
                x_tr,
                y_tr,
                cfg,
                seed=sc.seed,
                x_val=x_te,
                y_val=y_te,
                on_epoch=on_epoch,
                task=kind,
            )
        ctx.model = model
        ctx.results["training"] = {
            "mode": "central",
            "config": {
                "epochs": cfg.epochs,
                "batch_size": cfg.batch_size,
                "lr": cfg.lr,
                "lr_schedule": cfg.lr_schedule,
                "weight_decay": cfg.weight_decay,
            },
            "history": [h.to_json() for h in history],
            "final_accuracy": history[-1].val_accuracy,
        }
        if kind.metric != "accuracy":  # the kind's headline and its best trivial baseline
            ctx.results["training"]["task"] = central_task_figures(kind, model, ctx)
        last = history[-1]
        ctx.central_metric = last.val_accuracy if last.val_metric is None else last.val_metric
        ctx.add_figure(
            "training",
            "Training curve",
            plots.training_curve(
                history,
                chance=1.0 / ds.num_classes if kind.metric == "accuracy" else None,
                metric=kind.label(),
            ),
            f"Loss and {kind.label()} per epoch of the central baseline (held-out test "
            f"{kind.label()}).",
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
        # the model on the context: the edge-trained global model when edge training
        # replaced it (federated / hierarchical), else the central baseline
        trained_by = ctx.model_source
        scaler = ctx.standardizer
        extra = {
            "family": ctx.scenario.task.model,
            "dataset": ds.name,
            "trained_by": trained_by,
            "trained_on": CENTRAL_TRAIN if trained_by == "central" else DEVICE_SHARDS,
            # lets `edgeintel compress MODEL.onnx` evaluate on what the model never saw
            "data_split": ctx.data_split,
            "preprocess": None if scaler is None else scaler.to_json(),
            # what the outputs mean: the task kind and what it chose on validation (the
            # anomaly threshold, the regression tolerance), for whoever serves the model
            "task": {"kind": ctx.scenario.task.kind, **ctx.task_kind().options()},
        }
        with ctx.task("Exporting to ONNX", total=1) as advance:
            artifact = export_onnx(
                ctx.model, ds.sample_shape, ctx.run_dir / "model.onnx", ds.classes, extra=extra
            )
            # the weights beside it: runtimes that export from PyTorch (ExecuTorch) rebuild the
            # model from the scenario's task and these (`edgeintel export RUN --runtime`)
            import torch

            torch.save(ctx.model.state_dict(), ctx.run_dir / "model.pt")
            advance()
        ctx.artifact = artifact
        ctx.results["model"] = {
            "family": ctx.scenario.task.model,
            "trained_by": trained_by,
            "trained_on": extra["trained_on"],
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
            # windows of timed runs repeat until three consecutive medians agree
            stats = measure_latency(
                session, x_te[:1], runs=inf.latency_runs, warmup=inf.warmup_runs, windows=3
            )
            advance()
        per_profile = {}
        samples = {"this machine (measured)": stats.samples_ms}
        for name, prof in ctx.scenario.device_profiles.items():
            s = scale_latency(stats, prof.compute_speed)
            samples[f"{name} (estimated)"] = s.samples_ms
            per_profile[name] = {
                "compute_speed": prof.compute_speed,
                "p50_ms": round(s.p50_ms, 4),
                "p95_ms": round(s.p95_ms, 4),
                "p99_ms": round(s.p99_ms or 0.0, 4),
                # energy of one inference while computing: W * ms = mJ
                "energy_mj": round(prof.power_compute_w * s.p50_ms, 4),
                "latency_source": "estimated: this machine's timing / compute_speed",
            }
        ds = ctx.require_dataset()
        # the task kind's predictions and metrics (its threshold / tolerance from validation)
        kind = ctx.task_kind()
        pred = kind.predict(onnx_logits, x_te)
        figures = kind.evaluate(pred, y_te)
        metric = kind.metric
        per_device: list[dict[str, Any]] = []
        extra: dict[str, Any] = {}
        if metric == "accuracy":  # a classifier: confusion matrix and accuracy per device
            cm = np.zeros((ds.num_classes, ds.num_classes), dtype=np.int64)
            np.add.at(cm, (y_te, pred), 1)
            per_device = _per_device_accuracy(ctx, cm)
            extra = {"confusion_matrix": cm.tolist(), "per_device": per_device}
        else:
            extra = {"task": kind.name, "options": kind.options(), "metrics_onnx": figures}
        torch_figures = kind.evaluate(kind.predict(torch_logits, x_te), y_te)
        ctx.results["evaluation"] = {
            "metric": metric,
            f"{metric}_torch": torch_figures.get(metric),
            f"{metric}_onnx": figures.get(metric),
            "test_samples": len(y_te),
            "onnx_max_abs_diff": float(np.abs(onnx_logits - torch_logits).max()),
            "latency_ms": {
                k: round(v, 4) if isinstance(v, float) else v for k, v in stats.to_json().items()
            },
            "latency_samples_ms": stats.samples_json(),
            "per_profile": per_profile,
            **extra,
        }
        ctx.add_figure(
            "evaluation",
            "Inference latency distribution",
            plots.latency_distribution(
                {k: list(v) for k, v in samples.items()}, "latency per inference, batch 1 (ms)"
            ),
            f"ONNX Runtime at batch 1, {stats.runs} timed runs over {stats.windows} windows "
            f"({'stable' if stats.stable else 'NOT stable'}: window medians within 15 %); box "
            "= quartiles, red tick = p95. Device rows are this machine's timings divided by "
            "each profile's compute speed (estimated, not measured on the device).",
        )
        for f in task_figures(kind, pred, y_te, ds.classes):  # the kind's own plots
            ctx.add_figure("evaluation", f.title, f.figure, f.caption)
        if per_device:
            ctx.add_figure(
                "evaluation",
                "Expected accuracy per device",
                plots.per_device_accuracy(
                    [d["device"] for d in per_device],
                    [d["expected_accuracy"] for d in per_device],
                    [d["group"] for d in per_device],
                    chance=1.0 / ds.num_classes,
                    overall=figures["accuracy"],
                ),
                "Held-out recall of each class weighted by the class mix of each device's "
                "data: the accuracy a device would see on its own distribution.",
            )


def central_task_figures(kind: TaskKind, model: Any, ctx: RunContext) -> dict[str, Any]:
    """The kind's figures of ``model``: quantities chosen on the validation split (anomaly
    threshold, regression tolerance), every metric on the test split, and the best trivial
    baseline (fitted on the training targets) on the same test split."""
    x_te, y_te = ctx.test_arrays()
    _, y_tr = ctx.train_arrays()
    fitted = ctx.task_kind() if ctx.model is model else kind
    figures = fitted.evaluate(fitted.predict(predict_logits(model, x_te), x_te), y_te)
    name, value = fitted.best_baseline(y_tr, y_te)
    return {
        "kind": kind.name,
        "metric": kind.metric,
        "higher_is_better": kind.higher_is_better,
        "options": fitted.options(),
        "test": figures,
        "baseline": {"name": name, "value": value},
        "beats_baseline": kind.metric in figures and fitted.better(figures[kind.metric], value),
        "summary": fitted.summary(figures, (name, value)) if kind.metric in figures else "",
    }


def _per_device_accuracy(ctx: RunContext, cm: np.ndarray) -> list[dict[str, Any]]:
    """Per device: held-out per-class recall weighted by the device's class counts."""
    ds = ctx.require_dataset()
    support = cm.sum(1)
    recall = np.divide(np.diag(cm), support, out=np.zeros(len(cm)), where=support > 0)
    out: list[dict[str, Any]] = []
    for dev, idx in zip(ctx.devices, ctx.device_parts, strict=False):
        counts = np.bincount(ds.y[idx], minlength=ds.num_classes)
        if counts.sum() == 0:
            continue
        out.append(
            {
                "device": dev.name,
                "group": dev.group,
                "profile": dev.profile_name,
                "samples": int(counts.sum()),
                "expected_accuracy": round(float(counts @ recall / counts.sum()), 4),
            }
        )
    return out
