"""The ``offloading`` stage: where each device's inference runs.

It runs after ``compress`` and plans on the artifact the devices receive (the one most
device instances receive when profiles differ; the exported fp32 model without compression
or with an early exit, whose exit head belongs to it), so a profile's planned latency is
the latency of the model it runs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgeintel.data.provenance import CENTRAL_TRAIN, DEVICE_SHARDS, SERVER_SET
from edgeintel.offloading.early_exit import ExitProfile
from edgeintel.offloading.scenario_plan import ScenarioPlan, plan_scenario
from edgeintel.offloading.settings import EarlyExitSettings
from edgeintel.pipeline.core import RunContext, Stage, register_stage
from edgeintel.pipeline.sections import offloading_section as _section  # noqa: F401  (registers the section)

__all__ = ["OffloadingStage"]


@register_stage
class OffloadingStage(Stage):
    """Profile the exported model per layer, place the fleet, replay link traces, execute splits."""

    name = "offloading"
    order = 57  # after compress: plan on the artifact the devices receive
    title = "Offloading (placement and DNN partitioning)"

    def enabled(self, ctx: RunContext) -> bool:
        return ctx.scenario.settings.offloading.enabled

    def run(self, ctx: RunContext) -> None:
        if ctx.artifact is None:
            raise RuntimeError("no exported model to plan offloading for")
        x_te, _ = ctx.test_arrays()
        ee = ctx.scenario.settings.offloading.early_exit
        exit_json: dict[str, Any] | None = None
        exit_profile: ExitProfile | None = None
        if ee is not None and ee.enabled:
            with ctx.task("Early exit (fit, calibrate on validation, export)", total=1) as adv:
                exit_json, exit_profile = _early_exit(ctx, ee)
                adv()
        model_path, planned_on = _planning_artifact(ctx, exit_profile is not None)
        with ctx.task("Offloading plan (profile, place, execute)", total=1) as advance:
            result = plan_scenario(
                ctx.scenario,
                model_path,
                ctx.run_dir / "offloading",
                sample=x_te[:8],  # the first profiles; every chosen split runs on all
                early_exit=exit_profile,
            )
            advance()
        for note in result.notes():  # the report's section warns with the same sentence
            ctx.console.print(f"[yellow]warning:[/] offloading: {note}")
        ctx.offloading_plan = result
        ctx.results["offloading"] = {**result.to_json(), "planned_on": planned_on}
        if exit_json is not None:
            if result.without_exit is not None:
                exit_json["plan"] = {
                    "mean_latency_ms_with_exit": round(float(np.mean(result.plan.latency_ms)), 3),
                    "mean_latency_ms_without_exit": round(
                        float(np.mean(result.without_exit.latency_ms)), 3
                    ),
                    "devices_choosing_exit": sum(r["decision"] == "exit" for r in result.rows),
                }
            ctx.results["offloading"]["early_exit"] = exit_json
        _figures(ctx, result)


def _planning_artifact(ctx: RunContext, early_exit: bool) -> tuple[Path, dict[str, Any]]:
    """The ONNX file to plan on and a record of it: the artifact (compression's choice)
    most device instances receive (ties: the first profile's), else the exported model."""
    assert ctx.artifact is not None
    received = dict(ctx.compressed_artifacts)
    per = (ctx.results.get("compression") or {}).get("per_profile") or {}
    label = {p: str((per.get(p) or {}).get("chosen", Path(a).stem)) for p, a in received.items()}
    devices = ctx.scenario.expand_devices()
    by_profile = {
        p: label.get(p, "fp32 (model.onnx)") for p in dict.fromkeys(d.profile_name for d in devices)
    }
    fixed = ctx.scenario.settings.offloading.profile_file is not None
    if not received or early_exit or fixed:
        why = "the exported fp32 model: " + (
            "its early exit head belongs to it"
            if early_exit
            else "settings.offloading.profile_file profiles it"
            if fixed
            else "no compression ran"
        )
        record = {"artifact": "fp32 (model.onnx)", "why": why, "profiles_receive": by_profile}
        return Path(ctx.artifact.path), record
    counts = Counter(label[d.profile_name] for d in devices if d.profile_name in label)
    chosen = counts.most_common(1)[0][0]
    path = next(received[p] for p in received if label[p] == chosen)
    others = sorted(p for p in received if label[p] != chosen)
    why = "the artifact the devices receive from compression" + (
        f" (most devices; {', '.join(others)} receive another: their planned latency is "
        "that of this artifact)"
        if others
        else ""
    )
    return Path(path), {"artifact": chosen, "why": why, "profiles_receive": by_profile}


def _early_exit(
    ctx: RunContext, st: EarlyExitSettings
) -> tuple[dict[str, Any], ExitProfile | None]:
    """Fit, choose and calibrate the exit on the data this model's provenance allows;
    (results JSON, planner profile or None when skipped)."""
    import torch

    from edgeintel.models.early_exit import export_early_exit
    from edgeintel.offloading.early_exit import (
        cascade_predictions,
        check_exit_blocks,
        choose_exit_point,
        profile_exit,
    )
    from edgeintel.onnx_files import make_session

    if ctx.model is None:
        raise RuntimeError("no trained model to attach an exit to")
    ds = ctx.require_dataset()
    blocks = check_exit_blocks(ctx.model, st.after_block, list(st.candidate_blocks))
    source = ctx.model_source
    roles: dict[str, Any] = {
        "model_trained_by": source,
        "model_trained_on": CENTRAL_TRAIN if source == "central" else DEVICE_SHARDS,
        "exit_point": "validation split" if len(blocks) > 1 else "given (one candidate)",
        "threshold": "validation split",
        "reported": "test split",
    }
    if source == "central":
        fit = ctx.train_arrays()
        roles["exit_head_fit"] = CENTRAL_TRAIN
    else:
        fit = ctx.server_arrays()
        roles["exit_head_fit"] = SERVER_SET
        if len(fit[1]) == 0:
            reason = (
                f"{source}-trained model and no server-held set (data.server_fraction = 0): "
                "the exit head is not fitted, no device sample is used centrally"
            )
            roles["exit_head_fit"] = "none"
            ctx.log(f"early exit skipped: {reason}")
            return {"skipped": reason, "data_roles": roles}, None
    val = ctx.val_arrays()
    shape = tuple(int(d) for d in ds.sample_shape)
    choice = choose_exit_point(
        ctx.model,
        shape,
        ds.num_classes,
        blocks,
        fit,
        val,
        st.target_accuracy,
        st.max_accuracy_drop,
        st.confidence,
        seed=ctx.seed,
        epochs=st.epochs,
    )
    cal = choice.calibration
    x_te, y_te = ctx.test_arrays()
    net = choice.net
    net.eval()
    with torch.no_grad():
        t_exit, t_full = (t.numpy() for t in net(torch.from_numpy(x_te.astype(np.float32))))
    pred, exited = cascade_predictions(t_exit, t_full, cal.rule)
    files = export_early_exit(net, shape, ctx.run_dir / "offloading" / "early_exit", cal.rule)
    # the exported fused graph (ONNX If) on the first test inputs against the cascade
    fused = make_session(files.fused_path)
    worst, agree = 0.0, True
    for i in range(min(8, len(y_te))):
        logits, flag = fused.run(None, {"input": x_te[i : i + 1].astype(np.float32)})
        ref = t_exit[i : i + 1] if exited[i] else t_full[i : i + 1]
        worst = max(worst, float(np.abs(logits - ref).max()))
        agree &= bool(flag) == bool(exited[i])
    # the planner assumes the lower 95 % bound of the validation exit rate
    prof = profile_exit(files, cal.exit_rate_lower, ds.num_classes, shape, runs=20)
    out = {
        "after_block": choice.after,
        "chosen_by": choice.chosen_by,
        "confidence": str(cal.rule.kind),
        "threshold": float(cal.rule.threshold),
        "data_roles": roles,
        "fit_samples": len(fit[1]),
        "validation": cal.to_json(),
        "candidates_validation": {str(k): v for k, v in choice.candidates.items()},
        "test": {
            "samples": len(y_te),
            "exit_rate": float(exited.mean()),
            "accuracy_cascade": float(np.mean(pred == y_te)),
            "accuracy_full": float(np.mean(t_full.argmax(1) == y_te)),
            "accuracy_exit_head": float(np.mean(t_exit.argmax(1) == y_te)),
        },
        "fused_graph_max_abs_diff": worst,
        "fused_graph_agrees": agree,
        "profile": {
            "head_ms_here": round(prof.head_ms, 4),
            "tail_ms_here": round(prof.tail_ms, 4),
            "feature_bytes": prof.feature_bytes,
            "p_exit_assumed": round(prof.p_exit, 4),
        },
    }
    return out, prof


def _figures(ctx: RunContext, r: ScenarioPlan) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = r.problem.devices
    series: dict[str, Any] = {"plan": r.plan}
    series.update({f"all-{k}": b for k, b in r.baselines.items() if b is not None})
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    width = 0.8 / len(series)
    xs = np.arange(len(names))
    for i, (label, p) in enumerate(series.items()):
        axes[0].bar(xs + i * width, p.latency_ms, width, label=label)
        axes[1].bar(xs + i * width, p.energy_j * 1e3, width, label=label)
    for ax, yl in zip(
        axes, ("latency per request (ms)", "device energy per request (mJ)"), strict=True
    ):
        ax.set_xticks(xs + 0.4 - width / 2, names, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel(yl)
        ax.set_yscale("log")
    axes[0].legend(fontsize=7)
    ctx.add_figure(
        "offloading",
        "Latency and energy per device",
        fig,
        "Predicted per request (queueing included) for the plan and the all-local, all-edge "
        "and all-cloud baselines; log scale.",
    )
    g, prof = r.graph, r.profile
    fig, ax = plt.subplots(figsize=(11, 3.4))
    ax.bar(np.arange(g.num_nodes), prof.node_ms, color="tab:blue", label="compute here (ms)")
    ax.set_xlabel("layer (topological order)")
    ax.set_ylabel("ms on this machine")
    ax2 = ax.twinx()
    crossing = [
        sum(t.bytes for t in g.crossing(g.prefix_mask(k))) / 1024 for k in range(g.num_nodes + 1)
    ]
    ax2.plot(
        np.arange(g.num_nodes + 1) - 0.5, crossing, color="tab:orange", label="KiB sent if cut here"
    )
    ax2.set_ylabel("KiB crossing a prefix cut")
    for d, o in enumerate(r.plan.choice):
        opt = r.problem.options[d][o]
        if opt.tier == "hybrid" and opt.mask is not None:
            last = int(np.flatnonzero(opt.mask).max()) if opt.mask.any() else -1
            ax.axvline(last + 0.5, color="tab:red", ls="--", lw=1)
    ax.legend(loc="upper left", fontsize=7)
    ax2.legend(loc="upper right", fontsize=7)
    ctx.add_figure(
        "offloading",
        "Split points on the model graph",
        fig,
        "Per-layer compute (ONNX Runtime profile at 1 thread) and the bytes a cut after each "
        "prefix would send; dashed red lines mark the hybrid splits of the plan (last device "
        "layer).",
    )
    if r.timeline and len({row["t_s"] for row in r.timeline}) > 1:
        fig, ax = plt.subplots(figsize=(11, 3.2))
        labels = sorted({row["option"] for row in r.timeline})
        for name in names:
            rows = [row for row in r.timeline if row["device"] == name]
            ax.step(
                [row["t_s"] for row in rows],
                [labels.index(row["option"]) for row in rows],
                where="post",
                label=name,
                alpha=0.7,
            )
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_xlabel("time (s) of the link traces")
        ax.legend(fontsize=6, ncol=4)
        ctx.add_figure(
            "offloading",
            "Plan over the trace timeline",
            fig,
            "The option each device's adaptive policy holds after every link change "
            "(hysteresis "
            f"{ctx.scenario.settings.offloading.hysteresis:g}).",
        )
