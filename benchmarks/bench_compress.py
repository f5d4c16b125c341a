"""Compression benchmark: every technique on the zoo's image CNN (MNIST) and on the sensor
1-D CNN of ``scenarios/wearable_health.yaml`` (seglearn's watch_exercises, that scenario's
split by subject and preprocessing), trained on real data, measured side by side on this
machine.

Latency: ONNX Runtime at batch 1, one intra-op thread, after warm-up; all artifacts of a
model are timed in interleaved rounds (ROUNDS x RUNS calls each) and the median of the
per-round p50/p95 is reported, so background load hits every variant alike. PyTorch eager
fp32 at batch 1 (one thread) is timed the same way for comparison.

Run: PYTHONPATH=src python benchmarks/bench_compress.py  ->  benchmarks/results/compress.json
(``bench_compress.py sensor_cnn/watch_exercises`` reruns that model alone and keeps the other's
figures)
"""

from __future__ import annotations

import copy
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import mean_std, target, wilson_interval, write_results
from edgeintel.data import load_dataset, train_test_split
from edgeintel.data.device_data import derive_run_data
from edgeintel.inference import (
    MeasureConfig,
    make_recipe,
    measure_latency,
    measure_torch_latency,
    run_candidates,
)
from edgeintel.models import build_model
from edgeintel.models.train import TrainConfig, train_model
from edgeintel.onnx_files import make_session, onnx_predict
from edgeintel.scenario import load_scenario

ROUNDS = 5
RUNS = 200
SEEDS = tuple(range(int(os.environ.get("BENCH_COMPRESS_SEEDS", 3))))
FT = "fp32_finetuned"
#: recipes without any training step: their baseline is the fp32 model as trained
POST_TRAINING_ONLY = {"fp32", "int8_static", "int8_dynamic"}
Q = ("quantize_static", {"calibration": "minmax"})

ROOT = Path(__file__).resolve().parents[1]
MODELS = [
    # (dataset, family, width, epochs, batch size)
    ("mnist", "image_cnn", 32, 4, 32),
    ("watch_exercises", "sensor_cnn", 32, 15, 32),  # wearable_health's model and training
]
#: datasets taken as a shipped scenario derives them (its held-out split and preprocessing);
#: the others: stratified 25 % test, 15 % of the rest validation
SCENARIO_DATA = {"watch_exercises": "wearable_health"}


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


def _equal_finetune(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, seed: int) -> Any:
    """The fp32 model fine-tuned exactly as prune / low-rank / compact fine-tune after their
    change (FinetuneMixin defaults: Adam lr 1e-3, batch 64, 2 epochs, >= 60 steps)."""
    ft = copy.deepcopy(model)
    steps = max(1, -(-len(y) // 64))
    epochs = max(2, -(-60 // steps))
    train_model(ft, x, y, TrainConfig(epochs=epochs, batch_size=64, lr=1e-3), seed=seed)
    return ft


def _val_accuracy(path: str, x: np.ndarray, y: np.ndarray) -> float:
    return float((onnx_predict(make_session(path), x).argmax(1) == y).mean())


def _splits(dataset: str) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, str]:
    """(dataset, fit, validation, test indices, how they were cut)."""
    name = SCENARIO_DATA.get(dataset)
    if name is None:
        ds = load_dataset(dataset)
        tr, te = train_test_split(ds.y, 0.25, seed=0)
        fit, val = train_test_split(ds.y[tr], 0.15, seed=0)
        return ds, tr[fit], tr[val], te, "stratified: 25 % test, 15 % of the rest validation"
    sc = load_scenario(ROOT / "scenarios" / f"{name}.yaml")
    rd = derive_run_data(sc.data, sc.seed, edge=False, kind=sc.task.kind)
    sp = rd.splits
    how = f"scenarios/{name}.yaml's central derivation (split {sp.kind}, seed {sc.seed})"
    return rd.dataset, sp.train, sp.val, sp.test, how


def bench_model(dataset: str, family: str, width: int, epochs: int, bs: int, work: Path) -> dict:
    t0 = time.perf_counter()
    ds, fit, val, te, how = _splits(dataset)
    xf, yf, xv, yv, xt, yt = ds.x[fit], ds.y[fit], ds.x[val], ds.y[val], ds.x[te], ds.y[te]
    acc: dict[str, list[float]] = {}
    vacc: dict[str, list[float]] = {}
    seed0: dict[str, Any] = {}
    for seed in SEEDS:
        model = build_model(family, ds.sample_shape, ds.num_classes, width=width, seed=seed)
        train_model(model, xf, yf, TrainConfig(epochs=epochs, batch_size=bs), seed=seed)
        ft = _equal_finetune(model, xf, yf, seed)
        kw: dict[str, Any] = {
            "eval_data": (xt, yt), "measure": MeasureConfig(runs=5, warmup=1),
            "labels": ds.classes, "family": family, "width": width, "seed": seed,
        }  # fmt: skip
        results = run_candidates(
            model, space(), (xf, yf), xf[:256], workdir=work / f"{dataset}-{seed}", **kw
        )
        results += run_candidates(
            ft, [make_recipe(FT, [])], (xf, yf), xf[:256],
            workdir=work / f"{dataset}-{seed}-ft", **kw,
        )  # fmt: skip
        for r in results:
            acc.setdefault(r.recipe.name, []).append(r.final.accuracy)
            vacc.setdefault(r.recipe.name, []).append(_val_accuracy(r.artifact.path, xv, yv))
        if seed == SEEDS[0]:
            seed0 = {"results": results, "model": model}
    train_search_s = time.perf_counter() - t0
    results = seed0["results"]
    paths = {r.recipe.name: r.artifact.path for r in results}
    lat = paired_latency(paths, seed0["model"], xt[:1])
    base = next(r.final for r in results if r.recipe.name == "fp32")
    b50 = lat["fp32"][0]
    eager = lat["torch_eager_fp32"][0]
    mean = {k: float(np.mean(v)) for k, v in acc.items()}
    vmean = {k: float(np.mean(v)) for k, v in vacc.items()}
    rows = {}
    for r in results:
        m, name = r.final, r.recipe.name
        ref = _baseline(name)
        p50, p95 = lat[name]
        rows[name] = {
            "recipe": r.recipe.label(),
            "accuracy": mean_std(acc[name]),
            "val_accuracy": mean_std(vacc[name]),
            "accuracy_95ci_seed0": wilson_interval(round(acc[name][0] * len(yt)), len(yt)),
            "baseline": ref,
            "accuracy_drop_points": 100 * (mean[ref] - mean[name]),
            "val_accuracy_drop_points": 100 * (vmean[ref] - vmean[name]),
            "p50_ms": p50,
            "p95_ms": p95,
            "p50_speedup_vs_fp32_onnx": b50 / p50,
            "p50_speedup_vs_torch_eager_fp32": eager / p50,
            "derived": {
                "bytes": m.onnx_bytes,
                "compressed_bytes": m.compressed_bytes,
                "params": m.params,
                "macs": m.macs,
                "peak_memory_bytes": m.peak_memory_bytes,
                "size_ratio_vs_fp32": base.onnx_bytes / m.onnx_bytes,
            },
            "warnings": r.warnings,
        }
    # selection on validation only, among compressed recipes within 1.5 points there
    ok = [k for k in rows if k not in ("fp32", FT) and rows[k]["val_accuracy_drop_points"] <= 1.5]
    best = max(
        ok or [k for k in rows if k not in ("fp32", FT)],
        key=lambda k: (
            rows[k]["derived"]["size_ratio_vs_fp32"],
            rows[k]["p50_speedup_vs_fp32_onnx"],
        ),
    )
    return {
        "dataset": dataset,
        "family": family,
        "width": width,
        "input_shape": list(ds.sample_shape),
        "epochs": epochs,
        "batch_size": bs,
        "split": how,
        "train_samples": len(fit),
        "validation_samples": len(val),
        "test_samples": len(te),
        "seeds": list(SEEDS),
        "torch_eager_fp32": {"p50_ms": eager, "p95_ms": lat["torch_eager_fp32"][1]},
        "train_and_search_s": round(train_search_s, 1),
        "best_recipe": best,
        "best_recipe_selection": "largest size ratio (then p50 speed-up) among recipes whose "
        "validation accuracy is within 1.5 points of their equally treated baseline",
        "artifacts": rows,
    }


def _baseline(name: str) -> str:
    """Equal treatment: recipes that fine-tune compare with the equally fine-tuned fp32."""
    return "fp32" if name in POST_TRAINING_ONLY or name == FT else FT


def main(only: list[str]) -> None:
    """Every model, or only those named ``family/dataset`` in ``only`` (the others' figures
    are kept from the committed results)."""
    import json

    from _common import RESULTS_DIR

    tags = [f"{f}/{d}" for d, f, *_ in MODELS]
    unknown = sorted(set(only) - set(tags))
    if unknown:
        raise SystemExit(f"bench_compress: unknown model {unknown[0]!r} (one of {tags})")
    old = json.loads((RESULTS_DIR / "compress.json").read_text()) if only else None
    torch.set_num_threads(1)
    details: dict[str, Any] = {
        "latency_protocol": f"ONNX Runtime batch 1, 1 intra-op thread, warm-up 30, "
        f"median over {ROUNDS} interleaved rounds of {RUNS} runs (seed-0 artifacts)",
        "accuracy_protocol": "test accuracy, mean and sample std over seeds; drops against "
        "the equally treated baseline: fp32 for post-training recipes, fp32 fine-tuned as "
        "the fine-tuning recipes are for the others",
        "models": {},
    }
    targets = []
    with tempfile.TemporaryDirectory() as tmp:
        for dataset, family, width, epochs, bs in MODELS:
            tag = f"{family}/{dataset}"
            if old is not None and tag not in only:
                d = old["details"]["models"][tag]
                d["kept_from"] = d.get("kept_from") or old["created"]
            else:
                d = bench_model(dataset, family, width, epochs, bs, Path(tmp))
            details["models"][tag] = d
            a = d["artifacts"]
            q, p, best = a["int8_static"], a["prune_structured_50"], a[d["best_recipe"]]
            small = d["test_samples"] < 100
            note = f" ({d['test_samples']} test samples: see 95% interval)" if small else ""
            targets += [
                target(
                    f"{tag} int8 static p50 speedup vs fp32",
                    q["p50_speedup_vs_fp32_onnx"], ">=", 1.5, "x",
                ),
                target(
                    f"{tag} int8 static accuracy drop vs fp32{note}",
                    q["accuracy_drop_points"], "<=", 1.0, "points",
                ),
                target(
                    f"{tag} best recipe ({d['best_recipe']}, chosen on validation) test "
                    f"accuracy drop{note}",
                    best["accuracy_drop_points"], "<=", 1.5, "points",
                ),
                target(
                    f"{tag} best recipe p50 speedup",
                    best["p50_speedup_vs_fp32_onnx"], ">=", 2.0, "x",
                ),
                target(
                    f"{tag} structured prune 50% p50 speedup (fp32)",
                    p["p50_speedup_vs_fp32_onnx"], ">=", 1.15, "x",
                ),
            ]  # fmt: skip
    if only:
        details["rerun_only"] = only
    write_results("compress", targets, details)


if __name__ == "__main__":
    main(sys.argv[1:])
