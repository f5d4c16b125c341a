"""Keyword spotting for bench_tasks.py: the smart_home scenario's model on held-out voices,
its int8 artifact's accuracy and its speed against fp32 on this CPU.

Per seed (0, 1, 2; the seed moves the voice split and the initial weights) the pipeline
runs the scenario's data -> train -> export stages, two seeds at a time (one process and
one torch thread each; ``kws_dscnn`` trained centrally, its log-mel front end inside the
exported graph), then ONNX Runtime's static int8 (QDQ,
per-channel weights, MinMax calibration on 256 clips of the training split: no validation
or test clip touches it) quantizes the exported model. Both are scored on the test split:
clips of voices no training clip has (group split by voice variant). Speed: batch 1, one
intra-op thread, fp32 and int8 timed in alternating windows of ``CALLS`` calls (the order
flips each window), the ratio of the two medians of the window medians.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from _common import mean_std, target
from edgeintel.data.device_data import derive_run_data
from edgeintel.inference.quantize import QuantizeStaticConfig, quantize_static_onnx
from edgeintel.onnx_files import make_session, onnx_predict
from edgeintel.pipeline.core import run_pipeline
from edgeintel.scenario import load_scenario

__all__ = ["kws_targets", "run_kws"]

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "smart_home.yaml"
STAGES = ["data", "train", "export"]
CALIB = 256
WINDOWS = 11
CALLS = 40
WORKERS = 2  # seeds trained at once: one per core of this 2-core machine


def _interleaved_ms(a: Any, b: Any, x: np.ndarray) -> tuple[float, float]:
    """Median (over windows) of the per-window median ms of sessions ``a`` and ``b``."""
    name_a, name_b = a.get_inputs()[0].name, b.get_inputs()[0].name
    for _ in range(10):  # warm-up
        a.run(None, {name_a: x})
        b.run(None, {name_b: x})
    med: dict[str, list[float]] = {"a": [], "b": []}
    for w in range(WINDOWS):
        order = [("a", a, name_a), ("b", b, name_b)]
        for key, sess, name in order if w % 2 == 0 else order[::-1]:
            ts = []
            for _ in range(CALLS):
                t0 = time.perf_counter()
                sess.run(None, {name: x})
                ts.append((time.perf_counter() - t0) * 1000)
            med[key].append(float(np.median(ts)))
    return float(np.median(med["a"])), float(np.median(med["b"]))


def _train(runs: Path, seed: int) -> tuple[dict[str, Any], float]:
    """One seed's data -> train -> export (a worker process; one torch thread each)."""
    t0 = time.perf_counter()
    sc = load_scenario(SCENARIO).model_copy(update={"seed": seed})
    res = run_pipeline(sc, runs, run_id=f"kws-{seed}", stages=STAGES).results
    return dict(res.get("timings_s") or {}), time.perf_counter() - t0


def run_kws(runs: Path, seeds: tuple[int, ...], workers: int = WORKERS) -> dict[str, Any]:
    """Every seed's fp32 and int8 accuracy on held-out voices and their latencies: the seeds
    train in ``workers`` processes at once (one torch thread each), then each seed's
    artifacts are quantized and timed one seed at a time, alone on the machine."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(workers, len(seeds)), mp_context=ctx) as pool:
        trained = dict(zip(seeds, pool.map(_train, [runs] * len(seeds), seeds), strict=True))
    rows = []
    for seed in seeds:
        timings, train_wall = trained[seed]
        t0 = time.perf_counter()
        sc = load_scenario(SCENARIO).model_copy(update={"seed": seed})
        run_id = f"kws-{seed}"
        rd = derive_run_data(sc.data, sc.seed, edge=False, kind=sc.task.kind)
        x, y = rd.dataset.x, rd.dataset.y
        test, train = rd.splits.test, rd.splits.train
        fp32 = runs / run_id / "model.onnx"
        int8 = runs / run_id / "model_int8.onnx"
        calib = x[np.random.default_rng(seed).permutation(train)[:CALIB]]
        quantize_static_onnx(fp32, int8, calib, QuantizeStaticConfig())
        # the alternative the artifact does not take: the log-mel front end in int8 too
        every = runs / run_id / "model_int8_all.onnx"
        quantize_static_onnx(fp32, every, calib, QuantizeStaticConfig(float_log_inputs=False))
        s32, s8, sall = make_session(fp32), make_session(int8), make_session(every)
        acc32 = float(np.mean(onnx_predict(s32, x[test]).argmax(1) == y[test]))
        acc8 = float(np.mean(onnx_predict(s8, x[test]).argmax(1) == y[test]))
        acc_all = float(np.mean(onnx_predict(sall, x[test]).argmax(1) == y[test]))
        one = np.ascontiguousarray(x[test[:1]])
        ms32, ms8 = _interleaved_ms(s32, s8, one)
        ms32b, ms_all = _interleaved_ms(s32, sall, one)
        groups = rd.dataset.groups
        held_out = [] if groups is None else sorted(set(groups[test].tolist()))
        row = {
            "seed": seed,
            "test_clips": len(test),
            "held_out_voices": len(held_out),
            "train_clips": len(train),
            "training_s": timings.get("train"),
            "fp32_accuracy": round(acc32, 4),
            "int8_accuracy": round(acc8, 4),
            "fp32_ms": round(ms32, 4),
            "int8_ms": round(ms8, 4),
            "speedup": round(ms32 / ms8, 4),
            "all_int8_accuracy": round(acc_all, 4),
            "all_int8_speedup": round(ms32b / ms_all, 4),
            "fp32_bytes": fp32.stat().st_size,
            "int8_bytes": int8.stat().st_size,
            "pipeline_s": round(train_wall, 1),  # data + train + export, in a worker
            "measure_s": round(time.perf_counter() - t0, 1),  # quantize, score and time
        }
        rows.append(row)
        print(f"kws seed {seed}: {row}", flush=True)
    return {
        "scenario": SCENARIO.name,
        "seeds": rows,
        "fp32_accuracy": mean_std([r["fp32_accuracy"] for r in rows]),
        "int8_accuracy": mean_std([r["int8_accuracy"] for r in rows]),
        "drop_points": mean_std([100 * (r["fp32_accuracy"] - r["int8_accuracy"]) for r in rows]),
        "speedup": mean_std([r["speedup"] for r in rows]),
        "all_int8_drop_points": mean_std(
            [100 * (r["fp32_accuracy"] - r["all_int8_accuracy"]) for r in rows]
        ),
        "all_int8_speedup": mean_std([r["all_int8_speedup"] for r in rows]),
        "int8_note": "the artifact keeps the log-mel front end (DFT and mel convolutions, "
        "what feeds the Log) in float32: 8-bit energies lose the range the log exists to keep "
        "(all_int8_*: the front end quantized too); the int8 remainder (the DS-CNN) saves "
        "less than its QuantizeLinear/DequantizeLinear boundaries cost at batch 1",
        "data": "voice_commands: SYNTHETIC speech (espeak-ng, 8 accents x 64 voice variants) "
        "mixed with real recorded sounds (pygame) at 5-20 dB SNR; test = held-out voices",
        "calibration": f"{CALIB} clips of the training split (MinMax, per-channel int8 weights)",
        "timing": f"ORT CPU, batch 1, 1 thread, {WINDOWS} alternating windows of {CALLS} calls "
        f"(after every seed trained, {min(WORKERS, len(seeds))} at a time; timed alone)",
    }


def kws_targets(kws: dict[str, Any]) -> list[dict[str, Any]]:
    """The keyword-spotting targets (issue 20), goals fixed before measuring."""
    n = len(kws["seeds"])
    return [
        target(
            f"keyword spotting: fp32 accuracy on held-out voices (smart_home, mean of {n} seeds)",
            kws["fp32_accuracy"]["mean"],
            ">=",
            0.90,
            "",
        ),
        target(
            "keyword spotting: fp32 - int8 accuracy on held-out voices",
            kws["drop_points"]["mean"],
            "<=",
            1.0,
            "points",
        ),
        _speed_target(kws),
    ]


def _speed_target(kws: dict[str, Any]) -> dict[str, Any]:
    """int8 over fp32 speed; where it misses, the reason from the run's own figures."""
    t = target(
        "keyword spotting: int8 speed-up over fp32 (ORT, batch 1, 1 thread, this CPU)",
        kws["speedup"]["mean"],
        ">=",
        1.5,
        "x",
    )
    if not t["met"]:
        s0 = kws["seeds"][0]
        t["note"] = (
            f"seed 0: fp32 {s0['fp32_ms']:.3f} ms, int8 {s0['int8_ms']:.3f} ms per clip; "
            f"{kws['int8_note']}; quantizing the front end too runs "
            f"{kws['all_int8_speedup']['mean']:.2f}x fp32 but loses "
            f"{kws['all_int8_drop_points']['mean']:.1f} points (goal: within 1)"
        )
    return t
