"""Benchmark of the task kinds on the shipped workloads (issue 20): does each kind's model
beat its trivial baseline on real held-out data, trained where the data lives?

Each workload is a shipped scenario, run by the pipeline itself (stages data -> central
baseline -> edge training -> export -> evaluate) for 3 seeds (0, 1, 2; the seed moves the
splits, the partition and the initial weights):

* regression: ``scenarios/solar_farm.yaml``: next-hour irradiance at three weather stations
  (pvlib's TMY records), federated over 6 nodes, one site each;
* anomaly: ``scenarios/pipeline_monitoring.yaml``: valve-state anomalies in the Statlog
  Shuttle sensor records (river), federated over 12 RTUs, trained on normal records only,
  the threshold chosen on validation normal records at a 1% false-alarm rate.

Every figure is on the test split, which no selection touches (thresholds, tolerances and
the exported round are chosen on validation). Beside each mean over seeds: a 95% bootstrap
interval of the exported model's headline metric on seed 0's test set (moving blocks of a
day for the time series, single records otherwise; 500 resamples), and the trivial
baselines fitted on the training targets (mean and last-value predictors; the always-normal
detector).

Keyword spotting (``scenarios/smart_home.yaml``, benchmarks/_tasks_kws.py): the scenario's
``kws_dscnn`` on held-out voices of the synthetic voice_commands corpus, its static int8
artifact against fp32 in accuracy and in speed on this CPU (interleaved windows).
``--only kws`` (or ``--only anomaly``) measures that workload alone and keeps the other
targets of tasks.json as they were.

Goals, fixed before measuring (issue 20): keyword spotting: fp32 accuracy >= 0.90 on
held-out voices, int8 within 1 point of it and >= 1.5x faster; regression: the federated
RMSE within 10% of the central RMSE and at least 30% below the best trivial baseline;
anomaly: federated AUROC >= 0.90, within 0.03 of the central model, and F1 at the
validation-chosen threshold >= 0.80, and the redundancy filter (the caching stage, run on
the anomaly workload) skipping >= 50% of the readings with 0 alerts hidden by a reused
result; the whole benchmark in under 10 minutes on this machine. Writes
benchmarks/results/tasks.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np

from _common import RESULTS_DIR, mean_std, target, write_results
from _tasks_guard import guard_in_force, select_guard
from _tasks_kws import kws_targets, run_kws
from edgeintel.data.device_data import derive_run_data
from edgeintel.onnx_files import make_session, onnx_predict
from edgeintel.pipeline.core import run_pipeline
from edgeintel.scenario import load_scenario
from edgeintel.tasks import TaskKind, make_task
from edgeintel.training.scenario_train import resolve_mode
from edgeintel.training.settings import TrainingMode

ROOT = Path(__file__).resolve().parents[1]
SEEDS = (0, 1, 2)
STAGES = ["data", "train", "edge_train", "export", "evaluate"]
WORKLOADS = {
    "regression": ROOT / "scenarios" / "solar_farm.yaml",
    "anomaly": ROOT / "scenarios" / "pipeline_monitoring.yaml",
}
RESAMPLES = 500
DAY_BLOCK = 12  # daylight forecasts per day at the solar sites: one bootstrap block


def bootstrap_interval(
    kind: TaskKind, pred: np.ndarray, y: np.ndarray, block: int, seed: int = 0
) -> tuple[float, float]:
    """95% percentile interval of ``kind``'s headline metric over moving-block resamples
    of the test set (blocks of ``block`` consecutive samples; 1 = plain bootstrap)."""
    rng = np.random.default_rng(seed)
    n = len(y)
    starts = np.arange(max(n - block + 1, 1))
    draws = int(np.ceil(n / block))
    values = []
    for _ in range(RESAMPLES):
        idx = (rng.choice(starts, size=draws)[:, None] + np.arange(block)[None, :]).ravel()[:n]
        values.append(kind.evaluate(pred[idx], y[idx])[kind.metric])
    lo, hi = np.percentile(values, [2.5, 97.5])
    return round(float(lo), 6), round(float(hi), 6)


def _exported_predictions(sc: Any, run_dir: Path) -> tuple[TaskKind, np.ndarray, np.ndarray]:
    """The exported model's predictions on the run's own test split, with the kind fitted
    as recorded in its metadata (threshold / tolerance chosen on validation)."""
    recorded = json.loads((run_dir / "model.json").read_text())["extra"]["task"]
    kind = make_task(sc.task.kind, **{k: v for k, v in recorded.items() if k != "kind"})
    rd = derive_run_data(
        sc.data,
        sc.seed,
        edge=resolve_mode(sc) is not TrainingMode.CENTRAL,
        kind=sc.task.kind,
    )
    x, y = rd.dataset.x[rd.splits.test], rd.dataset.y[rd.splits.test]
    out = onnx_predict(make_session(run_dir / "model.onnx"), x)
    return kind, kind.predict(out, x), y


def run_workload(name: str, path: Path, runs: Path) -> dict[str, Any]:
    """Every seed's central and federated figures, and seed 0's bootstrap interval."""
    per_seed = []
    interval = None
    t_start = time.perf_counter()
    for seed in SEEDS:
        sc = load_scenario(path).model_copy(update={"seed": seed})
        t0 = time.perf_counter()
        stages = [*STAGES, "caching"] if name == "anomaly" else STAGES
        res = run_pipeline(sc, runs, run_id=f"{name}-{seed}", stages=stages).results
        task = res["training"]["task"]
        ev = res["evaluation"]
        row = {
            "seed": seed,
            "central": task["test"],
            "federated": ev["metrics_onnx"],
            "baseline": res["data"]["trivial_baseline"],
            "test_samples": res["data"]["test_samples"],
            "rounds_run": res["edge_training"]["summary"].get("rounds"),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        if name == "anomaly":  # the redundancy filter on each RTU's stream of readings
            row["filter"] = _filter_row(res)
        if seed == SEEDS[0]:
            kind, pred, y = _exported_predictions(sc, runs / f"{name}-{seed}")
            block = DAY_BLOCK if name == "regression" else 1
            interval = bootstrap_interval(kind, pred, y, block)
            row["check"] = kind.evaluate(pred, y)[kind.metric]  # equals evaluate's figure
        per_seed.append(row)
        print(f"{name} seed {seed}: {json.dumps({k: row[k] for k in ('central', 'federated')})}")
    out: dict[str, Any] = {"seeds": per_seed, "interval_95_seed0": interval, "scenario": path.name}
    if name == "anomaly":  # the reuse guard's default, chosen on the selection seeds
        out["guard_selection"] = select_guard(path, runs, [*STAGES, "caching"])
        out["guard_selection"]["in_force"] = guard_in_force(path)
    out["wall_s"] = round(time.perf_counter() - t_start, 1)
    return out


def wall_target(details: dict[str, Any]) -> dict[str, Any]:
    """The whole benchmark's wall time as the sum of each workload's own last measured
    run (``--only`` re-measures one workload and keeps the others' times)."""
    parts = {
        k: float(details[k].get("wall_s") or sum(r["seconds"] for r in details[k]["seeds"]))
        for k in ("regression", "anomaly")
    }
    parts["keyword_spotting"] = float(details["keyword_spotting"]["wall_s"])
    t = target("benchmark wall time (sum of the workloads' measured runs)", sum(parts.values()),
               "<=", 600, "s")  # fmt: skip
    if not t["met"]:
        slow = max(parts, key=parts.__getitem__)
        t["note"] = (
            f"{slow} took {parts[slow]:.0f} s of it: keyword spotting synthesises its speech "
            "and trains and times a DS-CNN for each of 3 seeds; `--only kws` / "
            "`--only anomaly` re-measure one workload within the limit"
        )
    return t


def _filter_row(res: dict[str, Any]) -> dict[str, int]:
    """The caching stage's filter figures summed over a run's filtered devices."""
    per_device = ((res.get("caching") or {}).get("filter") or {}).get("per_device", {})
    devs = [v for v in per_device.values() if "inputs" in v]
    return {
        "devices": len(devs),
        "inputs": sum(v["inputs"] for v in devs),
        "skipped": sum(v["skipped"] for v in devs),
        "alerts": sum(v.get("alerts", 0) for v in devs),
        "missed_alerts": sum(v.get("missed_alerts", 0) for v in devs),
    }


def only_kws() -> None:
    """Measure keyword spotting alone; the other targets of tasks.json stay as they were."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-tasks-") as tmp:
        kws = run_kws(Path(tmp), SEEDS)
    kws["wall_s"] = round(time.perf_counter() - t0, 1)
    old = json.loads((RESULTS_DIR / "tasks.json").read_text())
    keep = [t for t in old["targets"] if not t["name"].startswith(("keyword", "benchmark"))]
    details = {**old.get("details", {}), "keyword_spotting": kws}
    write_results("tasks", [*keep, *kws_targets(kws), wall_target(details)], details)


def anomaly_targets(ano: dict[str, Any]) -> list[dict[str, Any]]:
    """The anomaly workload's targets from its per-seed rows (``run_workload``)."""
    fed_auc = mean_std([r["federated"]["auroc"] for r in ano["seeds"]])
    cen_auc = mean_std([r["central"]["auroc"] for r in ano["seeds"]])
    fed_f1 = mean_std([r["federated"]["f1"] for r in ano["seeds"]])
    ano.update(federated_auroc=fed_auc, central_auroc=cen_auc, federated_f1=fed_f1)
    filt = [r["filter"] for r in ano["seeds"]]
    skip = mean_std([f["skipped"] / max(f["inputs"], 1) for f in filt])
    ano["filter_skip_fraction"] = skip
    missed, alerts = sum(f["missed_alerts"] for f in filt), sum(f["alerts"] for f in filt)
    hidden = target(
        "anomaly: redundancy filter, alerts hidden by a reused result (all seeds)",
        missed,
        "<=",
        0,
        "alerts",
    )
    if missed:  # why, measured: how many of the model's alerts a reused result hid
        hidden["note"] = (
            f"{missed} of the {alerts} alerts the model raised on the filtered streams were "
            "hidden: a normal result is not reused where the reading's difference x the "
            f"profiling segment's sensitivity (guard {ano['guard_selection']['in_force']}: "
            "the quantile of |change of score| / difference x the factor, chosen on the "
            "selection seeds) reaches the result's margin to the alarm threshold, but an "
            "unseen alarm can jump faster than any profiled "
            "reading did (the Shuttle readings are independent records, no steady stretches)"
        )
    skipped = target(
        "anomaly: redundancy filter, readings skipped on the RTUs' streams (mean of 3 seeds)",
        skip["mean"],
        ">=",
        0.50,
        "fraction",
    )
    if not skipped["met"]:
        skipped["note"] = (
            "the reuse guard and the alert rule (no alert of the profiling segment hidden at "
            "alert_margin x the threshold) process every reading that might be an alarm, and "
            "independent records differ from their neighbours by about as much as normal "
            "readings from the nearest alarms, so fewer than half can be skipped safely"
        )
    return [
        target(
            "anomaly: federated AUROC on test (pipeline_monitoring, mean of 3 seeds)",
            fed_auc["mean"],
            ">=",
            0.90,
            "",
        ),
        target(
            "anomaly: central AUROC - federated AUROC",
            cen_auc["mean"] - fed_auc["mean"],
            "<=",
            0.03,
            "",
        ),
        target(
            "anomaly: F1 at the validation-chosen threshold (1% false alarms on validation)",
            fed_f1["mean"],
            ">=",
            0.80,
            "",
        ),
        skipped,
        hidden,
    ]


def only_anomaly() -> None:
    """Measure the anomaly workload alone; the other targets of tasks.json stay as they were."""
    with tempfile.TemporaryDirectory(prefix="bench-tasks-") as tmp:
        ano = run_workload("anomaly", WORKLOADS["anomaly"], Path(tmp))
    old = json.loads((RESULTS_DIR / "tasks.json").read_text())
    keep = [t for t in old["targets"] if not t["name"].startswith(("anomaly", "benchmark"))]
    new = anomaly_targets(ano)
    details = {**old.get("details", {}), "anomaly": ano}
    first = [t for t in keep if t["name"].startswith("regression")]  # the file's order
    rest = [t for t in keep if not t["name"].startswith("regression")]
    write_results("tasks", [*first, *new, *rest, wall_target(details)], details)


def all_targets(details: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target of tasks.json from the workloads' measured details (``--only targets``
    derives them again from the stored details without measuring)."""
    reg, ano = details["regression"], details["anomaly"]
    fed_rmse = mean_std([r["federated"]["rmse"] for r in reg["seeds"]])
    cen_rmse = mean_std([r["central"]["rmse"] for r in reg["seeds"]])
    base_rmse = mean_std([r["baseline"]["value"] for r in reg["seeds"]])
    reg.update(federated_rmse=fed_rmse, central_rmse=cen_rmse, best_baseline_rmse=base_rmse)
    return [
        target(
            "regression: federated RMSE / central RMSE (solar_farm, mean of 3 seeds)",
            fed_rmse["mean"] / cen_rmse["mean"],
            "<=",
            1.10,
            "ratio",
        ),
        target(
            "regression: federated RMSE / best trivial baseline RMSE (last value or mean)",
            fed_rmse["mean"] / base_rmse["mean"],
            "<=",
            0.70,
            "ratio",
        ),
        *anomaly_targets(ano),
        *kws_targets(details["keyword_spotting"]),
        wall_target(details),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=["all", "kws", "anomaly", "targets"], default="all")
    only = ap.parse_args().only
    if only == "targets":  # no measuring: the targets again from the stored details
        stored = json.loads((RESULTS_DIR / "tasks.json").read_text())["details"]
        write_results("tasks", all_targets(stored), stored)
        return
    if only == "kws":
        only_kws()
        return
    if only == "anomaly":
        only_anomaly()
        return
    details: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-tasks-") as tmp:
        for name, path in WORKLOADS.items():
            details[name] = run_workload(name, path, Path(tmp))
        t0 = time.perf_counter()
        details["keyword_spotting"] = run_kws(Path(tmp), SEEDS)
        details["keyword_spotting"]["wall_s"] = round(time.perf_counter() - t0, 1)
    write_results("tasks", all_targets(details), details)


if __name__ == "__main__":
    main()
