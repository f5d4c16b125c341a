"""The anomaly filter's reuse guard, chosen on streams the benchmark does not report.

The guard (``settings.caching.filter.sensitivity_quantile`` x ``sensitivity_factor``)
decides which normal results may be reused on a new reading; too loose and an alarm hides
behind a reused normal result, too tight and nothing is skipped. Its default is chosen on
selection seeds (3, 4, 5: other device partitions and stream orders of the same scenario)
as the candidate that skips the most readings while hiding no alarm there; the reported
seeds (0, 1, 2) never take part. Each selection seed runs the pipeline once; the
``guard_selection`` stage, registered here and run after ``caching``, replays every
filtered device's stream (``caching_stage.filter_streams``, the caching stage's own
inputs and predictions) at each candidate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgeintel.caching import filter_stream
from edgeintel.caching.filter import hidden_alerts
from edgeintel.onnx_files import make_session
from edgeintel.pipeline.core import RunContext, Stage, register_stage, run_pipeline
from edgeintel.pipeline.stages.caching_stage import filter_arguments, filter_streams
from edgeintel.scenario import load_scenario

SELECTION_SEEDS = (3, 4, 5)
# (sensitivity_quantile, sensitivity_factor): the quantile of |change of score| / difference
# over the profiling segment, and the factor on it
CANDIDATES = ((0.9, 2.0), (0.9, 3.0), (0.95, 2.0), (0.99, 1.5))


def _key(q: float, f: float) -> str:
    return f"{q:g} x {f:g}"


@register_stage
class GuardSelection(Stage):
    """Replay each filtered device's stream at every candidate guard (benchmark only)."""

    name = "guard_selection"
    order = 66  # right after caching
    title = "Guard selection"

    def run(self, ctx: RunContext) -> None:
        if ctx.artifact is None:
            raise RuntimeError("guard selection needs the exported model (export stage)")
        session = make_session(ctx.artifact.path)
        streams = [
            (p, o) for _, _, p, o in filter_streams(ctx, session) if p is not None and o is not None
        ]
        base = filter_arguments(ctx)
        rows: dict[str, dict[str, int]] = {}
        for q, f in CANDIDATES:
            args = {**base, "sensitivity_quantile": q, "sensitivity_factor": f}
            row = {"inputs": 0, "skipped": 0, "alerts": 0, "missed_alerts": 0}
            for prepared, outputs in streams:
                _, run = filter_stream(prepared, outputs, **args)
                refs = outputs[len(outputs) - run.inputs :]
                row["inputs"] += run.inputs
                row["skipped"] += run.skipped
                row["alerts"] += sum(map(args["urgent"], refs))
                row["missed_alerts"] += hidden_alerts(run.outputs, refs, args["urgent"])
            rows[_key(q, f)] = row
        ctx.results["guard_selection"] = rows


def select_guard(path: Path, runs: Path, stages: list[str]) -> dict[str, Any]:
    """Every candidate's skips and hidden alarms summed over the selection seeds, and the
    choice: the largest skip fraction with no alarm hidden (ties: the earlier candidate)."""
    total: dict[str, dict[str, int]] = {}
    for seed in SELECTION_SEEDS:
        sc = load_scenario(path).model_copy(update={"seed": seed})
        res = run_pipeline(sc, runs, run_id=f"guard-{seed}", stages=[*stages, "guard_selection"])
        for k, row in res.results["guard_selection"].items():
            acc = total.setdefault(k, dict.fromkeys(row, 0))
            for field, v in row.items():
                acc[field] += int(v)
        print(f"guard selection, seed {seed}: {json.dumps(res.results['guard_selection'])}")
    safe = [k for k, r in total.items() if r["missed_alerts"] == 0]
    chosen = max(safe, key=lambda k: total[k]["skipped"] / max(total[k]["inputs"], 1), default=None)
    return {"seeds": list(SELECTION_SEEDS), "candidates": total, "chosen": chosen}


def guard_in_force(path: Path) -> str:
    """The scenario's guard as the candidate key (what the reported seeds run with)."""
    fs = load_scenario(path).settings.caching.filter
    return _key(fs.sensitivity_quantile, fs.sensitivity_factor)


__all__ = ["CANDIDATES", "SELECTION_SEEDS", "guard_in_force", "select_guard"]
