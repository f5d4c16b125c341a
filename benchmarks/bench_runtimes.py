"""Device-runtime benchmark (issue 23): the parity matrix of two shipped models in every
registered runtime, on the whole test split, for 3 training seeds.

Models: the vision model of ``scenarios/mnist_federated.yaml`` (image_cnn width 8 on MNIST)
and the time-series model of ``scenarios/wearable_health.yaml`` (sensor_cnn at the scenario's
width on seglearn's watch_exercises, test split = 3 held-out subjects), each trained
centrally with the scenario's own data derivation and central training settings, seeds
0, 1, 2. Every (runtime, precision) is exported from the same
trained model (int8 with the runtime's own quantizer, calibrated on the training split) and
compared with fp32 PyTorch on the whole test split: top-1 agreement, accuracy, logit error,
first diverging layer below the goal.

Goals, fixed before measuring (the issue's): top-1 agreement with fp32 >= 99.5 % for every
fp32 export and >= 98 % for every int8 export, the worst seed counting; every registered
runtime exports every shipped model. Details: p50/p95 latency at batch 1 on this CPU (one
thread, each runtime's own API, seed 0's artifacts timed in interleaved rounds, median of
the rounds' p50), p50 relative to ONNX Runtime fp32, int8 speed-up per runtime, file size,
peak memory.

Run: PYTHONPATH=src python benchmarks/bench_runtimes.py  ->  benchmarks/results/runtimes.json
(``bench_runtimes.py time_series`` reruns that model alone and keeps the other's figures)
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import mean_std, target, write_results
from edgeintel.data.device_data import derive_run_data
from edgeintel.inference.parity import AGREEMENT_GOALS, ParityReport, parity_matrix
from edgeintel.inference.runtimes import PRECISIONS, RUNTIMES
from edgeintel.inference.runtimes.base import ExportSource
from edgeintel.inference.runtimes.measure import measure_artifact
from edgeintel.models import build_model, export_onnx
from edgeintel.models.train import train_model
from edgeintel.scenario import load_scenario
from edgeintel.threads import DEFAULT_THREADS

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"vision": "mnist_federated", "time_series": "wearable_health"}
SEEDS = tuple(range(int(os.environ.get("BENCH_RUNTIMES_SEEDS", 3))))
ROUNDS = 3
RUNS = 200


def _train(name: str, seed: int, work: Path) -> tuple[ExportSource, dict[str, np.ndarray]]:
    sc = load_scenario(ROOT / "scenarios" / f"{name}.yaml")
    rd = derive_run_data(sc.data, sc.seed, edge=False, kind=sc.task.kind)
    ds, sp = rd.dataset, rd.splits
    x = ds.x.astype(np.float32)
    model = build_model(sc.task.model, ds.sample_shape, ds.num_classes, sc.task.width, seed)
    cfg = sc.settings.training.central_config(threads=DEFAULT_THREADS)
    train_model(model, x[sp.train], ds.y[sp.train], cfg, seed=seed)
    model.eval()
    onnx = work / f"{name}_{seed}.onnx"
    export_onnx(model, ds.sample_shape, onnx, ds.classes)
    data = {
        "x_test": x[sp.test],
        "y_test": ds.y[sp.test],
        "x_calib": x[sp.train],
    }
    return ExportSource(onnx, tuple(ds.sample_shape), model), data


def _timed(report: ParityReport, sample: np.ndarray) -> dict[str, dict[str, Any]]:
    """Interleaved rounds over every exported artifact timed on ``sample`` (batch 1): median
    p50/p95 (ms), bytes on disk, peak memory (bytes)."""
    rows = [r for r in report.rows if r.artifact is not None]
    p50: dict[str, list[float]] = {}
    p95: dict[str, list[float]] = {}
    out: dict[str, dict[str, Any]] = {}
    for rnd in range(ROUNDS):
        for r in rows:
            key = f"{r.runtime}/{r.precision}"
            m = measure_artifact(
                r.runtime, Path(r.artifact or ""), sample, runs=RUNS, warmup=20,
                memory=rnd == 0,
            )  # fmt: skip
            p50.setdefault(key, []).append(m.latency.p50_ms)
            p95.setdefault(key, []).append(m.latency.p95_ms)
            if rnd == 0:
                out[key] = {"file_bytes": m.file_bytes, "peak_memory_bytes": m.peak_memory_bytes}
    for key, rec in out.items():
        rec["p50_ms"] = round(float(np.median(p50[key])), 5)
        rec["p95_ms"] = round(float(np.median(p95[key])), 5)
        rec["p50_rounds_ms"] = [round(v, 5) for v in p50[key]]
    return out


def bench_model(kind: str, name: str, work: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    per_seed: list[dict[str, Any]] = []
    timing: dict[str, Any] = {}
    for seed in SEEDS:
        source, data = _train(name, seed, work)
        report = parity_matrix(
            source,
            data["x_test"],
            data["y_test"],
            data["x_calib"],
            runtimes=RUNTIMES.names(),
            precisions=PRECISIONS,
            out_dir=work / f"{name}_{seed}",
        )
        per_seed.append(report.to_json())
        if seed == SEEDS[0]:
            timing = _timed(report, np.ascontiguousarray(data["x_test"][:1]))
        print(f"{name} seed {seed}: " + "; ".join(
            f"{r.runtime} {r.precision} "
            + (f"agree {r.agreement:.4f}" if r.error is None else "failed")
            for r in report.rows
        ), flush=True)  # fmt: skip
    ort = timing.get("onnxruntime/fp32", {}).get("p50_ms")
    for rec in timing.values():
        rec["p50_vs_onnxruntime_fp32"] = round(rec["p50_ms"] / ort, 4) if ort else None
    speedup = {}
    for rt in RUNTIMES.names():
        f, q = timing.get(f"{rt}/fp32"), timing.get(f"{rt}/int8")
        if f and q:
            speedup[rt] = round(f["p50_ms"] / q["p50_ms"], 4)
    cells: dict[str, dict[str, Any]] = {}
    for rep in per_seed:
        for row in rep["rows"]:
            key = f"{row['runtime']}/{row['precision']}"
            cell = cells.setdefault(key, {"agreement": [], "accuracy": [], "errors": []})
            if row["error"] is not None:
                cell["errors"].append(row["error"])
                continue
            cell["agreement"].append(row["agreement"])
            cell["accuracy"].append(row["accuracy"])
            if row["divergence"] is not None:
                cell.setdefault("divergence", []).append(row["divergence"])
    summary = {
        key: {
            "agreement": mean_std(c["agreement"]) if c["agreement"] else None,
            "accuracy": mean_std(c["accuracy"]) if c["accuracy"] else None,
            "worst_agreement": min(c["agreement"]) if c["agreement"] else None,
            "error": c["errors"][0] if c["errors"] else None,
            **({"divergence": c["divergence"]} if "divergence" in c else {}),
        }
        for key, c in cells.items()
    }
    return {
        "scenario": f"scenarios/{name}.yaml",
        "kind": kind,
        "test_samples": per_seed[0]["samples"],
        "reference_accuracy": mean_std([r["reference_accuracy"] for r in per_seed]),
        "cells": summary,
        "latency_seed0": timing,
        "int8_speedup_p50": speedup,
        "parity_per_seed": per_seed,
        "wall_s": round(time.perf_counter() - t0, 1),
    }


def _agreement_targets(kind: str, res: dict[str, Any]) -> list[dict[str, Any]]:
    name = MODELS[kind]
    seeds = len(res["parity_per_seed"])
    return [
        target(
            f"{kind} ({name}) {key.replace('/', ' ')}: top-1 agreement with fp32 "
            f"PyTorch, worst of {seeds} seeds, {res['test_samples']} test samples",
            cell["worst_agreement"],
            ">=",
            AGREEMENT_GOALS[key.split("/")[1]],
            "fraction",
        )
        for key, cell in res["cells"].items()
        if cell["error"] is None  # a failed export is counted by the export target
    ]


def main(only: list[str]) -> None:
    """Run every model, or only those named in ``only`` (the others' figures are kept from
    the committed results)."""
    import json

    from _common import RESULTS_DIR

    unknown = sorted(set(only) - set(MODELS))
    if unknown:
        raise SystemExit(f"bench_runtimes: unknown model {unknown[0]!r} (one of {list(MODELS)})")
    t0 = time.perf_counter()
    details: dict[str, Any] = {
        "seeds": list(SEEDS),
        "goals": AGREEMENT_GOALS,
        "latency_protocol": f"batch 1, one thread, {ROUNDS} interleaved rounds x {RUNS} runs "
        "after 20 warm-up, stable windows; median of the rounds' p50",
        "models": {},
    }
    old = json.loads((RESULTS_DIR / "runtimes.json").read_text()) if only else None
    targets = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind, name in MODELS.items():
            if old is not None and kind not in only:
                res = old["details"]["models"][kind]
                res["kept_from"] = res.get("kept_from") or old["created"]
            else:
                res = bench_model(kind, name, Path(tmp))
            details["models"][kind] = res
            targets += _agreement_targets(kind, res)
    exporting = [
        rt
        for rt in RUNTIMES.names()
        if all(
            m["cells"][f"{rt}/{p}"]["error"] is None
            for m in details["models"].values()
            for p in PRECISIONS
        )
    ]
    details["runtimes_exporting"] = exporting
    details["blocked"] = {
        rt: m["cells"][f"{rt}/fp32"]["error"]
        for m in details["models"].values()
        for rt in RUNTIMES.names()
        if m["cells"][f"{rt}/fp32"]["error"] is not None
    }
    targets.append(
        target(
            "registered runtimes that export both shipped models at fp32 and int8",
            len(exporting),
            ">=",
            len(RUNTIMES.names()),
            "runtimes",
        )
    )
    details["wall_s"] = round(time.perf_counter() - t0, 1)
    if only:
        details["rerun_only"] = only
    write_results("runtimes", targets, details)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main(sys.argv[1:])
