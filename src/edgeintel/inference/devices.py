"""Compression for a scenario's device profiles: budgets, per-profile choice, table and plot.

Used by ``edgeintel compress`` and the ``compress`` stage of ``edgeintel run``:
candidates are measured once on this machine, then judged per device profile
(latency scaled by the profile's compute speed, peak memory bounded by its
memory), and the chosen artifact is copied to ``<out>/<profile>.onnx``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeintel.errors import ConfigError
from edgeintel.inference.compress import CompressionResult
from edgeintel.inference.recipe import Recipe
from edgeintel.inference.search import Budget, SearchResult, default_search_space, select
from edgeintel.inference.settings import CompressBudget, CompressSettings
from edgeintel.paths import inside, safe_name
from edgeintel.topology import DeviceProfile

__all__ = [
    "ProfileChoice",
    "budget_for_profile",
    "choose_for_profiles",
    "front_rows",
    "pareto_figure",
    "search_space_for",
]

MB = 1024 * 1024


def budget_for_profile(name: str, profile: DeviceProfile, settings: CompressSettings) -> Budget:
    """The ``Budget`` of profile ``name``: its override in ``budgets`` or the common budget."""
    spec: CompressBudget = settings.budgets.get(name, settings.budget)
    mem = spec.max_peak_memory_mb if spec.max_peak_memory_mb is not None else profile.memory_mb
    return Budget(
        max_latency_ms=spec.max_latency_ms,
        max_bytes=None if spec.max_model_kb is None else int(spec.max_model_kb * 1024),
        max_peak_memory_bytes=int(mem * MB),
        min_accuracy=spec.min_accuracy,
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
            "accuracy": c.measurement.accuracy,
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
) -> dict[str, ProfileChoice]:
    """Select one candidate per profile and copy its ONNX file (+ metadata) to ``out_dir``."""
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
        sr = select(results, budget, settings.objective, device=f"device profile {name!r}")
        assert sr.chosen is not None
        dst = inside(out, name, ".onnx", what="device profile name")
        shutil.copyfile(sr.chosen.result.artifact.path, dst)
        meta = sr.chosen.result.artifact.to_json()
        meta.update(path=str(dst), extra={**meta.get("extra", {}), "profile": name})
        dst.with_suffix(".json").write_text(json.dumps(meta, indent=2))
        choices[name] = ProfileChoice(name, sr, dst)
    return choices


def front_rows(sr: SearchResult) -> list[dict[str, Any]]:
    """One row per candidate for a table: device latency, size, accuracy, verdict."""
    rows = []
    for c in sr.candidates:
        m = c.measurement
        rows.append(
            {
                "candidate": c.label,
                "recipe": c.result.recipe.label(),
                "accuracy": round(m.accuracy, 4),
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
    """Accuracy vs device latency; marker area ~ ONNX size; front joined, chosen starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    sizes = [c.measurement.onnx_bytes for c in sr.candidates]
    top = max(sizes)
    for c in sr.candidates:
        m = c.measurement
        ax.scatter(
            c.latency_ms,
            m.accuracy,
            s=30 + 400 * m.onnx_bytes / top,
            color="tab:green" if c.feasible else "tab:gray",
            alpha=0.75,
            edgecolors="black" if c.on_front else "none",
        )
        ax.annotate(
            c.label,
            (c.latency_ms, m.accuracy),
            fontsize=7,
            xytext=(4, 4),
            textcoords="offset points",
        )
    front = sorted((sr.candidates[i] for i in sr.front), key=lambda c: c.latency_ms)
    ax.plot(
        [c.latency_ms for c in front],
        [c.measurement.accuracy for c in front],
        "k--",
        lw=0.8,
        label="Pareto front",
    )
    if sr.chosen is not None:
        ax.scatter(
            sr.chosen.latency_ms,
            sr.chosen.measurement.accuracy,
            marker="*",
            s=320,
            color="tab:red",
            label=f"chosen: {sr.chosen.label}",
            zorder=5,
        )
    b = sr.budget
    if b.max_latency_ms is not None:
        ax.axvline(b.max_latency_ms, color="tab:red", lw=0.8, ls=":", label="latency budget")
    if b.min_accuracy is not None:
        ax.axhline(b.min_accuracy, color="tab:orange", lw=0.8, ls=":", label="accuracy floor")
    ax.set_xlabel(f"{b.latency_stat} latency on device (ms)")
    ax.set_ylabel("held-out accuracy")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right", frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return fig
