"""Compression for a scenario's device profiles: budgets, per-profile choice, table and plot.

Used by ``edgeintel compress`` and the ``compress`` stage of ``edgeintel run``:
candidates are measured once on this machine, then judged per device profile
(latency scaled by the profile's compute speed, peak memory bounded by its
memory), and the chosen artifact is copied to ``<out>/<profile>.onnx`` — or, for a
profile that names another runtime, ``<out>/<profile><suffix>`` in that runtime's format.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeintel.errors import ConfigError
from edgeintel.inference.compress import CompressionResult
from edgeintel.inference.recipe import Recipe, RecipeStep, make_recipe
from edgeintel.inference.search import Budget, SearchResult, default_search_space, select
from edgeintel.inference.settings import CompressBudget, CompressSettings
from edgeintel.onnx_files import make_session, onnx_predict
from edgeintel.paths import inside, safe_name
from edgeintel.tasks import TaskKind, make_task
from edgeintel.topology import DeviceProfile

__all__ = [
    "ProfileChoice",
    "budget_for_profile",
    "calibration_free",
    "choose_for_profiles",
    "federated_space",
    "front_rows",
    "onnx_metric",
    "pareto_figure",
    "recipe_data_roles",
    "search_space_for",
]

MB = 1024 * 1024

# techniques that fit on data (fine-tuning, distillation, calibration)
_NEEDS_DATA = {
    "quantize_static",
    "qat",
    "distill",
    "prune_structured",
    "prune_unstructured",
    "low_rank",
    "compact",
}
# techniques whose only data use is ``base.finetune`` (can run as federated rounds)
FINETUNES = {"qat", "prune_structured", "prune_unstructured", "low_rank", "compact"}
# techniques that need samples at the server: calibration, distillation (teacher logits)
_CENTRAL_ONLY = {"quantize_static", "distill"}


def calibration_free(space: list[Recipe]) -> list[Recipe]:
    """The recipes of ``space`` that need no data (plus dynamic int8 when missing)."""
    keep = [r for r in space if not any(s.technique in _NEEDS_DATA for s in r.steps)]
    if not any(r.name == "int8-dynamic" for r in keep):
        keep.append(make_recipe("int8-dynamic", ["quantize_dynamic"]))
    return keep


def federated_space(space: list[Recipe], server_set: bool) -> list[Recipe]:
    """The recipes that can run when fine-tuning is federated (after edge training).

    Fine-tuning steps run as federated rounds; calibration and distillation need the
    server-held set: without one, distillation recipes are dropped and static int8 is
    replaced by dynamic int8 (named ``<name>-dyn``), so a pruned or QAT model still
    gets its federated fine-tuning. Dynamic int8 is added when missing.
    """
    if server_set:
        out = list(space)
    else:
        out = []
        for r in space:
            techs = {s.technique for s in r.steps}
            if "distill" in techs:
                continue
            if "quantize_static" in techs:
                if not techs & FINETUNES:
                    continue  # plain static int8: dynamic int8 below covers it
                steps = [s for s in r.steps if s.technique != "quantize_static"]
                r = Recipe(f"{r.name}-dyn", (*steps, RecipeStep.make("quantize_dynamic")))
            out.append(r)
    if not any(r.name == "int8-dynamic" for r in out):
        out.append(make_recipe("int8-dynamic", ["quantize_dynamic"]))
    return out


def recipe_data_roles(recipe: Recipe, fit_role: str, finetune_role: str) -> dict[str, str]:
    """Which data each fitting step of ``recipe`` saw, by role.

    ``fit_role``: the central set handed to compression (calibration, distillation);
    ``finetune_role``: where fine-tuning ran (the same set, or device shards via
    federated rounds). Steps the recipe lacks are ``none``.
    """
    techs = {s.technique for s in recipe.steps}
    return {
        "fine_tuning": finetune_role if techs & FINETUNES else "none",
        "distillation": fit_role if "distill" in techs else "none",
        "calibration": fit_role if "quantize_static" in techs else "none",
    }


def onnx_metric(path: Any, x: np.ndarray, y: np.ndarray, task: TaskKind | None = None) -> float:
    """The headline metric of ``task`` (``None``: classification, top-1 accuracy) of an
    ONNX file on ``(x, y)`` with ONNX Runtime (nan on an empty set or where undefined)."""
    if len(y) == 0:
        return float("nan")
    kind = task if task is not None else make_task("classification")
    figures = kind.evaluate(kind.predict(onnx_predict(make_session(path), x), x), y)
    return float(figures.get(kind.metric, float("nan")))


def budget_for_profile(name: str, profile: DeviceProfile, settings: CompressSettings) -> Budget:
    """The ``Budget`` of profile ``name``: its override in ``budgets`` or the common budget."""
    spec: CompressBudget = settings.budgets.get(name, settings.budget)
    mem = spec.max_peak_memory_mb if spec.max_peak_memory_mb is not None else profile.memory_mb
    return Budget(
        max_latency_ms=spec.max_latency_ms,
        max_bytes=None if spec.max_model_kb is None else int(spec.max_model_kb * 1024),
        max_peak_memory_bytes=int(mem * MB),
        min_accuracy=spec.min_accuracy,
        max_metric_drop=spec.max_metric_drop,
        compute_speed=profile.compute_speed,
        latency_stat=settings.latency_stat,
    )


def search_space_for(settings: CompressSettings, onnx_only: bool = False) -> list[Recipe]:
    """The recipes of ``settings.search_space``; only ONNX-level recipes for an ONNX input."""
    space = default_search_space(quick=settings.search_space == "quick")
    if onnx_only:
        space = [r for r in space if not r.torch_steps]
    return space


@dataclass
class ProfileChoice:
    """The search verdict for one device profile and where its artifact was written."""

    profile: str
    search: SearchResult
    artifact_path: Path

    def to_json(self) -> dict[str, Any]:
        assert self.search.chosen is not None
        c = self.search.chosen
        return {
            "chosen": c.label,
            "artifact": str(self.artifact_path),
            c.measurement.metric: c.measurement.metric_value,
            "latency_ms_device": c.latency_ms,
            "onnx_bytes": c.measurement.onnx_bytes,
            "budget": self.search.budget.to_json(),
            "front": [self.search.candidates[i].label for i in self.search.front],
            "rejected": self.search.rejected,
        }


def choose_for_profiles(
    results: list[CompressionResult],
    profiles: dict[str, DeviceProfile],
    settings: CompressSettings,
    out_dir: str | Path,
    extra: dict[str, Any] | None = None,
    extra_for: Callable[[CompressionResult], dict[str, Any]] | None = None,
    by_runtime: dict[str, list[CompressionResult]] | None = None,
) -> dict[str, ProfileChoice]:
    """Select one candidate per profile and copy its artifact (+ metadata) to ``out_dir``.

    A profile whose ``runtime`` has candidates in ``by_runtime`` (``runtime_candidates``:
    exported and measured in that runtime) is judged on those and receives
    ``<out>/<profile><suffix>`` in that runtime's format (with its sidecar files); every
    other profile on ``results`` (ONNX Runtime), as ``<out>/<profile>.onnx``.
    ``extra`` is added to each artifact's metadata (e.g. which data it was fitted on);
    ``extra_for(result)`` adds what depends on the chosen candidate.
    """
    unknown = sorted(set(settings.budgets) - set(profiles))
    if unknown:
        raise ConfigError(
            f"settings.inference.compress.budgets.{unknown[0]}: unknown device profile; "
            f"expected one of: {', '.join(sorted(profiles))}"
        )
    for name in profiles:  # each becomes a file name: <out>/<name>.onnx
        safe_name(name, "device profile name")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    choices = {}
    for name, prof in profiles.items():
        budget = budget_for_profile(name, prof, settings)
        own_results = (by_runtime or {}).get(prof.runtime, results)
        sr = select(own_results, budget, settings.objective, device=f"device profile {name!r}")
        assert sr.chosen is not None
        src = Path(sr.chosen.result.artifact.path)
        dst = inside(out, name, src.suffix, what="device profile name")
        shutil.copyfile(src, dst)
        for sidecar in sr.chosen.result.artifact.extra.get("files", [])[1:]:
            shutil.copyfile(src.with_name(sidecar), dst.with_suffix(Path(sidecar).suffix))
        meta = sr.chosen.result.artifact.to_json()
        own = extra_for(sr.chosen.result) if extra_for is not None else {}
        meta.update(
            path=str(dst),
            extra={**meta.get("extra", {}), **(extra or {}), **own, "profile": name},
        )
        dst.with_suffix(".json").write_text(json.dumps(meta, indent=2))
        choices[name] = ProfileChoice(name, sr, dst)
    return choices


def front_rows(sr: SearchResult) -> list[dict[str, Any]]:
    """One row per candidate for a table: device latency, size, the kind's metric, verdict."""
    rows = []
    for c in sr.candidates:
        m = c.measurement
        rows.append(
            {
                "candidate": c.label,
                "recipe": c.result.recipe.label(),
                m.metric: round(m.metric_value, 4),
                "latency_ms": round(c.latency_ms, 4),
                "kib": round(m.onnx_bytes / 1024, 1),
                "mmacs": round(m.macs / 1e6, 3),
                "peak_mem_kib": round(m.peak_memory_bytes / 1024, 1),
                "front": c.on_front,
                "chosen": c is sr.chosen,
                "verdict": c.reason,
            }
        )
    return rows


def pareto_figure(sr: SearchResult, title: str) -> Any:
    """The task kind's metric (accuracy, RMSE, AUROC) vs device latency; marker area ~ ONNX
    size, with a size key.

    The front is over three objectives (metric, latency, size), so it is not
    drawn as a line through a 2-D projection: front members get a black edge.
    The chosen candidate gets a hollow red ring (the point stays visible);
    budget lines are drawn and the legend sits outside the axes.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(8.2, 4.4))
    sizes = [c.measurement.onnx_bytes for c in sr.candidates]
    top = max(sizes)

    def area(nbytes: float) -> float:
        return 30 + 400 * nbytes / top

    for c in sr.candidates:
        m = c.measurement
        ax.scatter(
            c.latency_ms,
            m.metric_value,
            s=area(m.onnx_bytes),
            color="tab:green" if c.feasible else "tab:gray",
            alpha=0.6,
            edgecolors="black" if c.on_front else "none",
            linewidths=1.4,
            zorder=3,
        )
        off = (14, 11) if c is sr.chosen else (5, 5)  # clear of the chosen ring
        ax.annotate(
            c.label,
            (c.latency_ms, m.metric_value),
            fontsize=7,
            xytext=off,
            textcoords="offset points",
            zorder=4,
        )
    handles: list[Any] = [
        Line2D([], [], ls="", marker="o", color="tab:green", alpha=0.6, label="meets the budget"),
        Line2D([], [], ls="", marker="o", color="tab:gray", alpha=0.6, label="misses it"),
        Line2D([], [], ls="", marker="o", mfc="white", mec="black", label="Pareto front (3-D)"),
    ]
    if sr.chosen is not None:
        ax.scatter(
            sr.chosen.latency_ms,
            sr.chosen.measurement.metric_value,
            s=area(sr.chosen.measurement.onnx_bytes) * 2.4 + 80,
            facecolors="none",
            edgecolors="tab:red",
            linewidths=2.0,
            zorder=5,
        )
        handles.append(
            Line2D([], [], ls="", marker="o", mfc="none", mec="tab:red", mew=2, ms=10,
                   label=f"chosen: {sr.chosen.label}")
        )  # fmt: skip
    b = sr.budget
    if b.max_latency_ms is not None:
        ax.axvline(b.max_latency_ms, color="tab:red", lw=1.0, ls=":")
        handles.append(Line2D([], [], color="tab:red", ls=":", label="latency budget"))
    if b.min_accuracy is not None:
        ax.axhline(b.min_accuracy, color="tab:orange", lw=1.0, ls=":")
        handles.append(Line2D([], [], color="tab:orange", ls=":", label="accuracy floor"))
    if b.max_bytes is not None:
        kb = b.max_bytes / 1024
        handles.append(Line2D([], [], ls="", marker="", label=f"size budget {kb:.0f} KiB"))
    # size key: marker areas of three reference sizes
    for kib in sorted({round(top / 1024 * f, 1) for f in (0.25, 0.5, 1.0)}):
        if kib > 0:
            handles.append(
                ax.scatter([], [], s=area(kib * 1024), color="tab:green", alpha=0.25,
                           label=f"{kib:g} KiB")
            )  # fmt: skip
    ax.set_xlabel(f"{b.latency_stat} latency on device (ms)")
    metric = sr.candidates[0].measurement
    better = "higher" if metric.higher_is_better else "lower"
    ax.set_ylabel(f"held-out {metric.metric} ({better} is better)")
    ax.set_title(title, fontsize=10)
    ax.margins(x=0.12, y=0.1)
    ax.legend(
        handles=handles,
        fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        frameon=False,
        labelspacing=1.1,
        borderpad=0.8,
    )
    ax.grid(alpha=0.25)
    ax.spines[["top", "right"]].set_visible(False)
    return fig
