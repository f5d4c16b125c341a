"""Benchmark of the main job: does every component pay off on the default scenario (issue 24)?

Runs `edgeintel run scenarios/default.yaml` fresh with 3 seeds (the scenario's seed and
the next two; partition, initialisation, sampling and streams all follow the seed) and
reports, as targets that can miss (goals fixed before measuring, the worst seed counts):

- offloading: the plan's mean latency per request over all-local <= 0.8x;
- redundancy filter: device time saved net of the filter's own cost > 0 ms on every
  device the filter ran on;
- result cache: hit path (lookup) over recomputing (the model on the edge server) <= 0.5x;
- compression: device profiles whose chosen artifact meets a budget fp32 misses >= 1;
- training: central baseline minus the edge-trained model's test accuracy <= the
  scenario's `settings.training.central_tolerance`;
- the run's wall time <= 180 s on this machine (2 cores).

`--all-scenarios` also runs every other shipped scenario once and records its `payoff`
object in the details (no targets; ~5 more minutes).

Run: PYTHONPATH=src python benchmarks/bench_run.py  ->  benchmarks/results/run.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from _common import target, write_results
from edgeintel.pipeline import run_pipeline
from edgeintel.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
SEEDS = 3


def _run(path: Path, tmp: str, run_id: str, seed: int | None = None) -> dict[str, Any]:
    sc = load_scenario(path)
    if seed is not None:
        sc = sc.model_copy(update={"seed": seed})
    t0 = time.perf_counter()
    res = run_pipeline(
        sc,
        runs_dir=tmp,
        run_id=run_id,
        console=Console(quiet=True),
        show_progress=False,
        scenario_file=str(path),
    )
    wall = time.perf_counter() - t0
    r = res.results
    caching = r.get("caching") or {}
    filt = (caching.get("filter") or {}).get("per_device") or {}
    cache = (caching.get("result_cache") or {}).get("per_server") or {}
    return {
        "seed": sc.seed,
        "wall_s": round(wall, 2),
        "stage_s": r["timings_s"],
        "accuracy_onnx": (r.get("evaluation") or {}).get("accuracy_onnx"),
        "test_samples": (r.get("evaluation") or {}).get("test_samples"),
        "payoff": r.get("payoff") or {},
        "filter_saved_ms": {
            d: v["compute_saved_ms"] for d, v in filt.items() if "compute_saved_ms" in v
        },
        "cache_hit_over_model": {
            s: round(float(v["lookup_ms_mean"]) / float(v["model_ms"]), 4) for s, v in cache.items()
        },
        "tolerance": sc.settings.training.central_tolerance,
    }


def _targets(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def pay(r: dict[str, Any], key: str) -> dict[str, Any]:
        return r["payoff"].get(key) or {}

    ratio = max(
        float(pay(r, "offloading").get("with", 1e9)) / float(pay(r, "offloading").get("without", 1))
        for r in runs
    )
    saved = min(
        (float(v) for r in runs for v in r["filter_saved_ms"].values()), default=float("-inf")
    )
    hit = max((v for r in runs for v in r["cache_hit_over_model"].values()), default=float("inf"))
    won = min(int(pay(r, "compression").get("budgets_met_fp32_misses", 0)) for r in runs)
    gap = max(
        float(pay(r, "training").get("without", 1)) - float(pay(r, "training").get("with", 0))
        for r in runs
    )
    tol = max(float(r["tolerance"]) for r in runs)
    n = len(runs)
    worst, least = f"worst of {n} seeds", f"min over {n} seeds"
    wall = max(r["wall_s"] for r in runs)
    return [
        target(
            f"offloading: plan / all-local mean latency ({worst})", round(ratio, 4), "<=", 0.8, "x"
        ),
        target(
            f"filter: device time saved net of its cost, every device ({least})",
            round(saved, 3),
            ">",
            0,
            "ms",
        ),
        target(
            f"result cache: hit path / recompute on the edge server ({worst})",
            round(hit, 4),
            "<=",
            0.5,
            "x",
        ),
        target(
            f"compression: profiles meeting a budget fp32 misses ({least})",
            won,
            ">=",
            1,
            "profiles",
        ),
        target(
            f"training: central minus edge-trained test accuracy ({worst})",
            round(gap, 4),
            "<=",
            tol,
            "points",
        ),
        target(f"default scenario run time ({worst})", wall, "<=", 180, "s"),
    ]


def main() -> None:
    details: dict[str, Any] = {}
    default = ROOT / "scenarios" / "default.yaml"
    base_seed = load_scenario(default).seed
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(SEEDS):
            runs.append(_run(default, tmp, f"default-{k}", base_seed + k))
            print(f"default seed {base_seed + k}: {runs[-1]['wall_s']:.1f} s", flush=True)
        details["default"] = runs
        if "--all-scenarios" in sys.argv:
            for path in sorted((ROOT / "scenarios").glob("*.yaml")):
                if path.stem != "default":
                    details[path.stem] = _run(path, tmp, path.stem)
                    print(f"{path.stem}: {details[path.stem]['wall_s']:.1f} s", flush=True)
    write_results("run", _targets(runs), details)


if __name__ == "__main__":
    main()
