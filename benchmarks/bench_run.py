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

Targets take the worst seed; `details.summary` gives the worst and the mean over seeds of
each target's figure, and every run's `payoff` rows stay under `details.default`. The
seeds run one after another in one process, so Python, torch, onnxruntime and the
dataset are imported once (about 10 s a run from the shell); each run's wall time is
timed from `run_pipeline` to its end, with the 1-minute load average beside it. The
training gap is in accuracy points (100 x the difference of accuracies).

`--seeds N` runs fewer seeds (the targets say how many); `--only-targets` derives the
targets again from run.json's stored runs without measuring. `--all-scenarios` also runs
every other shipped scenario once and records its `payoff`
object in the details (no targets; ~5 more minutes).

Run: PYTHONPATH=src python benchmarks/bench_run.py  ->  benchmarks/results/run.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from _common import RESULTS_DIR, target, write_results
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
    load = os.getloadavg()[0]
    r = res.results
    caching = r.get("caching") or {}
    filt = (caching.get("filter") or {}).get("per_device") or {}
    cache = (caching.get("result_cache") or {}).get("per_server") or {}
    return {
        "seed": sc.seed,
        "wall_s": round(wall, 2),
        "load_1min_at_end": round(load, 2),
        "stage_s": r["timings_s"],
        "selected_round": ((r.get("edge_training") or {}).get("summary") or {}).get(
            "selected_round"
        ),
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


def _per_seed(runs: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Each target's figure per seed (a seed's own worst device or server where it has many)."""

    def pay(r: dict[str, Any], key: str) -> dict[str, Any]:
        return r["payoff"].get(key) or {}

    return {
        "offloading_ratio": [
            float(pay(r, "offloading").get("with", 1e9))
            / float(pay(r, "offloading").get("without", 1))
            for r in runs
        ],
        "filter_saved_ms": [
            min((float(v) for v in r["filter_saved_ms"].values()), default=float("-inf"))
            for r in runs
        ],
        "cache_hit_ratio": [
            max(r["cache_hit_over_model"].values(), default=float("inf")) for r in runs
        ],
        "budgets_won": [
            float(pay(r, "compression").get("budgets_met_fp32_misses", 0)) for r in runs
        ],
        "training_gap_points": [
            100.0 * (float(pay(r, "training")["without"]) - float(pay(r, "training")["with"]))
            for r in runs
        ],
        "wall_s": [float(r["wall_s"]) for r in runs],
    }


def _summary(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Worst and mean over seeds of every target's figure, with the per-seed values."""
    higher = {"filter_saved_ms", "budgets_won"}  # larger is better: the worst is the min
    out = {}
    for k, v in _per_seed(runs).items():
        worst = min(v) if k in higher else max(v)
        out[k] = {"worst": round(worst, 4), "mean": round(sum(v) / len(v), 4),
                  "per_seed": [round(x, 4) for x in v]}  # fmt: skip
    return out


def _targets(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    s = {k: v["worst"] for k, v in _summary(runs).items()}
    ratio, saved, hit = s["offloading_ratio"], s["filter_saved_ms"], s["cache_hit_ratio"]
    won, gap, wall = int(s["budgets_won"]), s["training_gap_points"], s["wall_s"]
    tol = 100.0 * max(float(r["tolerance"]) for r in runs)
    n = len(runs)
    worst, least = f"worst of {n} seeds", f"min over {n} seeds"
    offload = target(
        f"offloading: plan / all-local mean latency ({worst})", round(ratio, 4), "<=", 0.8, "x"
    )
    if not offload["met"]:  # why, from the worst seed's own plan
        ratios = _per_seed(runs)["offloading_ratio"]
        r = runs[ratios.index(max(ratios))]
        offload["note"] = (
            f"seed {r['seed']}: {r['payoff']['offloading'].get('why', '')}; the devices' speeds "
            "and powers are the cited figures of scenarios/default.yaml, not tuned until "
            "offloading wins"
        )
    return [
        offload,
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
            f"training: central minus edge-trained test accuracy, round chosen on the "
            f"validation split ({worst})",
            round(gap, 2),
            "<=",
            tol,
            "points",
        ),
        target(f"default scenario run time ({worst})", wall, "<=", 180, "s"),
    ]


def main() -> None:
    if "--only-targets" in sys.argv:  # no measuring: the targets again from run.json's runs
        stored = json.loads((RESULTS_DIR / "run.json").read_text())["details"]
        write_results("run", _targets(stored["default"]), stored)
        return
    details: dict[str, Any] = {}
    default = ROOT / "scenarios" / "default.yaml"
    base_seed = load_scenario(default).seed
    seeds = int(sys.argv[sys.argv.index("--seeds") + 1]) if "--seeds" in sys.argv else SEEDS
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(seeds):
            runs.append(_run(default, tmp, f"default-{k}", base_seed + k))
            print(f"default seed {base_seed + k}: {runs[-1]['wall_s']:.1f} s", flush=True)
        details["default"] = runs
        details["summary"] = _summary(runs)
        if "--all-scenarios" in sys.argv:
            for path in sorted((ROOT / "scenarios").glob("*.yaml")):
                if path.stem != "default":
                    details[path.stem] = _run(path, tmp, path.stem)
                    print(f"{path.stem}: {details[path.stem]['wall_s']:.1f} s", flush=True)
    write_results("run", _targets(runs), details)


if __name__ == "__main__":
    main()
