"""The ``offloading`` stage: where each device's inference runs, on the trained ONNX model."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeintel.offloading.scenario_plan import ScenarioPlan, plan_scenario
from edgeintel.pipeline import offloading_section as _section  # noqa: F401  (registers the section)
from edgeintel.pipeline.core import RunContext, Stage, register_stage

__all__ = ["OffloadingStage"]


@register_stage
class OffloadingStage(Stage):
    """Profile the exported model per layer, place the fleet, replay link traces, execute splits."""

    name = "offloading"
    order = 52
    title = "Offloading (placement and DNN partitioning)"

    def enabled(self, ctx: RunContext) -> bool:
        return ctx.scenario.settings.offloading.enabled

    def run(self, ctx: RunContext) -> None:
        if ctx.artifact is None:
            raise RuntimeError("no exported model to plan offloading for")
        x_te, _ = ctx.test_arrays()
        with ctx.task("Offloading plan (profile, place, execute)", total=1) as advance:
            result = plan_scenario(
                ctx.scenario, ctx.artifact.path, ctx.run_dir / "offloading", sample=x_te[:1]
            )
            advance()
        ctx.state["offloading_plan"] = result
        ctx.results["offloading"] = result.to_json()
        _figures(ctx, result)


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
