"""Compression benchmark: every technique on the zoo's image CNN (MNIST) and sensor 1-D CNN
(BasicMotions), trained on real data, measured side by side on this machine.

Latency: ONNX Runtime at batch 1, one intra-op thread, after warm-up; all artifacts of a
model are timed in interleaved rounds (ROUNDS x RUNS calls each) and the median of the
per-round p50/p95 is reported, so background load hits every variant alike. PyTorch eager
fp32 at batch 1 (one thread) is timed the same way for comparison.

Run: PYTHONPATH=src python benchmarks/bench_compress.py  ->  benchmarks/results/compress.json
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import target, write_results
from edgeintel.data import load_dataset, train_test_split
from edgeintel.inference import (
    MeasureConfig,
    make_recipe,
    measure_latency,
    measure_torch_latency,
    run_candidates,
)
from edgeintel.models import build_model, make_session
from edgeintel.models.train import TrainConfig, evaluate_accuracy, train_model

ROUNDS = 7
RUNS = 300
Q = ("quantize_static", {"calibration": "minmax"})

MODELS = [
    # (dataset, family, width, epochs, batch size)
    ("mnist", "image_cnn", 64, 6, 32),
    ("basic_motions", "sensor_cnn", 64, 40, 8),
]


def space() -> list[Any]:
    return [
        make_recipe("fp32", []),
        make_recipe("int8_static", [Q]),
        make_recipe("int8_dynamic", ["quantize_dynamic"]),
        make_recipe("qat_int8", ["qat", Q]),
        make_recipe("prune_structured_50", [("prune_structured", {"ratio": 0.5})]),
        make_recipe("prune_unstructured_50", [("prune_unstructured", {"ratio": 0.5})]),
        make_recipe("low_rank_90", [("low_rank", {"energy": 0.9})]),
        make_recipe("compact", ["compact"]),
        make_recipe("distill_dscnn", ["distill"]),
        make_recipe("prune50_int8", [("prune_structured", {"ratio": 0.5}), Q]),
        make_recipe("low_rank_90_int8", [("low_rank", {"energy": 0.9}), Q]),
        make_recipe("compact_int8", ["compact", Q]),
        make_recipe("distill_dscnn_int8", ["distill", Q]),
    ]


def paired_latency(paths: dict[str, str], torch_model: torch.nn.Module, sample: np.ndarray) -> dict:
    """Median over interleaved rounds of each artifact's p50/p95 (ms), plus PyTorch eager."""
    sessions = {k: make_session(p) for k, p in paths.items()}
    p50: dict[str, list[float]] = {k: [] for k in [*paths, "torch_eager_fp32"]}
    p95: dict[str, list[float]] = {k: [] for k in p50}
    for _ in range(ROUNDS):
        for k, s in sessions.items():
            st = measure_latency(s, sample, runs=RUNS, warmup=30)
            p50[k].append(st.p50_ms)
            p95[k].append(st.p95_ms)
        st = measure_torch_latency(torch_model, sample, runs=RUNS, warmup=30)
        p50["torch_eager_fp32"].append(st.p50_ms)
        p95["torch_eager_fp32"].append(st.p95_ms)
    return {k: (float(np.median(p50[k])), float(np.median(p95[k]))) for k in p50}


def bench_model(dataset: str, family: str, width: int, epochs: int, bs: int, work: Path) -> dict:
    t0 = time.perf_counter()
    ds = load_dataset(dataset)
    tr, te = train_test_split(ds.y, 0.25, seed=0)
    model = build_model(family, ds.sample_shape, ds.num_classes, width=width, seed=0)
    train_model(model, ds.x[tr], ds.y[tr], TrainConfig(epochs=epochs, batch_size=bs), seed=0)
    torch_acc = evaluate_accuracy(model, ds.x[te], ds.y[te])
    train_s = time.perf_counter() - t0
    results = run_candidates(
        model,
        space(),
        (ds.x[tr], ds.y[tr]),
        ds.x[tr][:256],
        eval_data=(ds.x[te], ds.y[te]),
        measure=MeasureConfig(runs=50, warmup=10),
        labels=ds.classes,
        family=family,
        width=width,
        workdir=work / dataset,
        seed=0,
    )
    search_s = time.perf_counter() - t0 - train_s
    paths = {r.recipe.name: r.artifact.path for r in results}
    lat = paired_latency(paths, model, ds.x[te][:1])
    base = results[0].final
    b50 = lat["fp32"][0]
    eager = lat["torch_eager_fp32"][0]
    rows = {}
    for r in results:
        m = r.final
        p50, p95 = lat[r.recipe.name]
        rows[r.recipe.name] = {
            "recipe": r.recipe.label(),
            "bytes": m.onnx_bytes,
            "compressed_bytes": m.compressed_bytes,
            "params": m.params,
            "macs": m.macs,
            "accuracy": m.accuracy,
            "p50_ms": p50,
            "p95_ms": p95,
            "peak_memory_bytes": m.peak_memory_bytes,
            "size_ratio_vs_fp32": base.onnx_bytes / m.onnx_bytes,
            "p50_speedup_vs_fp32_onnx": b50 / p50,
            "p50_speedup_vs_torch_eager_fp32": eager / p50,
            "accuracy_drop_points": 100 * (base.accuracy - m.accuracy),
            "warnings": r.warnings,
        }
    ok = {k: v for k, v in rows.items() if k != "fp32" and v["accuracy_drop_points"] <= 1.5}
    best = max(
        ok, key=lambda k: (rows[k]["size_ratio_vs_fp32"], rows[k]["p50_speedup_vs_fp32_onnx"])
    )
    return {
        "dataset": dataset,
        "family": family,
        "width": width,
        "input_shape": list(ds.sample_shape),
        "train_samples": len(tr),
        "test_samples": len(te),
        "torch_accuracy": torch_acc,
        "torch_eager_fp32": {"p50_ms": eager, "p95_ms": lat["torch_eager_fp32"][1]},
        "train_s": round(train_s, 1),
        "search_s": round(search_s, 1),
        "best_recipe": best,
        "artifacts": rows,
    }


def main() -> None:
    torch.set_num_threads(2)
    details: dict[str, Any] = {
        "latency_protocol": f"ONNX Runtime batch 1, 1 intra-op thread, warm-up 30, "
        f"median over {ROUNDS} interleaved rounds of {RUNS} runs",
        "models": {},
    }
    targets = []
    with tempfile.TemporaryDirectory() as tmp:
        for dataset, family, width, epochs, bs in MODELS:
            d = bench_model(dataset, family, width, epochs, bs, Path(tmp))
            details["models"][f"{family}/{dataset}"] = d
            a = d["artifacts"]
            q, p, best = a["int8_static"], a["prune_structured_50"], a[d["best_recipe"]]
            tag = f"{family}/{dataset}"
            targets += [
                target(
                    f"{tag} int8 static size ratio vs fp32", q["size_ratio_vs_fp32"], ">=", 3.5, "x"
                ),
                target(
                    f"{tag} int8 static p50 speedup vs fp32",
                    q["p50_speedup_vs_fp32_onnx"],
                    ">=",
                    1.5,
                    "x",
                ),
                target(
                    f"{tag} int8 static accuracy drop",
                    q["accuracy_drop_points"],
                    "<=",
                    1.0,
                    "points",
                ),
                target(
                    f"{tag} best recipe ({d['best_recipe']}) size ratio",
                    best["size_ratio_vs_fp32"],
                    ">=",
                    8.0,
                    "x",
                ),
                target(
                    f"{tag} best recipe accuracy drop",
                    best["accuracy_drop_points"],
                    "<=",
                    1.5,
                    "points",
                ),
                target(
                    f"{tag} best recipe p50 speedup",
                    best["p50_speedup_vs_fp32_onnx"],
                    ">=",
                    2.0,
                    "x",
                ),
                target(
                    f"{tag} structured prune 50% p50 speedup (fp32)",
                    p["p50_speedup_vs_fp32_onnx"],
                    ">=",
                    1.15,
                    "x",
                ),
            ]
    write_results("compress", targets, details)


if __name__ == "__main__":
    main()
