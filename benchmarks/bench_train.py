"""Edge training benchmark: compression, robustness, hierarchy, aggregation throughput.

Real MNIST (5000 digits, 20 % held out) split over 50 devices with Dirichlet(0.5)
label skew; 5 edge servers with 10 devices each, one backhaul hop to the cloud.
Model: the zoo MLP (width 16: 784-64-64-10, 55k parameters). Every device takes
part in every round and runs 10 local SGD steps (batch 32, lr 0.05).

Writes benchmarks/results/train.json. Runs in a few minutes on 2 cores.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import target, write_results
from edgeintel.data import load_dataset, partition, train_test_split
from edgeintel.models import build_model
from edgeintel.training import (
    ClientSpec,
    FederatedConfig,
    FederatedEngine,
    FlMode,
    Hop,
)
from edgeintel.training.aggregate import AggregationConfig, weighted_mean
from edgeintel.training.attacks import AttackConfig, alie_z
from edgeintel.training.compressors import CompressorConfig

SEED = 0
N_DEV, N_EDGE = 50, 5
ROUNDS_LONG, ROUNDS = 100, 50
EVAL_EVERY = 10
RULES = ["fedavg", "krum", "multi_krum", "median", "trimmed_mean"]


def _setup() -> dict[str, Any]:
    ds = load_dataset("mnist")
    tr, te = train_test_split(ds.y, 0.2, seed=SEED)
    parts = partition(ds.y[tr], N_DEV, "dirichlet", SEED, alpha=0.5, min_samples=10)
    clients = [ClientSpec(f"dev-{i}", f"edge-{i % N_EDGE}") for i in range(N_DEV)]
    paths = {f"edge-{e}": [Hop(1000.0, 5.0)] for e in range(N_EDGE)}
    return {
        "x": ds.x[tr], "y": ds.y[tr], "xt": ds.x[te], "yt": ds.y[te],
        "parts": parts, "clients": clients, "paths": paths, "shape": ds.sample_shape,
    }  # fmt: skip


def _run(env: dict[str, Any], name: str, **cfg: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "rounds": ROUNDS, "local_steps": 10, "batch_size": 32, "lr": 0.05,
        "eval_every": EVAL_EVERY, "seed": SEED,
    }  # fmt: skip
    config = FederatedConfig(**{**base, **cfg})
    model = build_model("mlp", env["shape"], 10, width=16, seed=SEED)
    eng = FederatedEngine(
        model, env["x"], env["y"], env["parts"], env["clients"], env["xt"], env["yt"],
        config, 10, env["paths"],
    )  # fmt: skip
    t0 = time.perf_counter()
    eng.run()
    wall = time.perf_counter() - t0
    hist = eng.state.history
    cum = {k: int(np.cumsum([r.bytes[k] for r in hist])[-1]) for k in hist[0].bytes}
    out = {
        "name": name,
        "final_accuracy": hist[-1].accuracy,
        "accuracy_by_round": {r.round: r.accuracy for r in hist if r.accuracy is not None},
        "bytes_total": cum,
        "bytes_by_round": [r.bytes for r in hist],
        "rejected": sum(r.rejected for r in hist),
        "wall_s": round(wall, 2),
        "dim": eng.dim,
    }
    print(f"{name:28s} acc {out['final_accuracy']:.4f}  {wall:6.1f} s  bytes {cum}", flush=True)
    return out


def _bytes_until(run: dict[str, Any], tier: str, rounds: int) -> int:
    return int(sum(b[tier] for b in run["bytes_by_round"][:rounds]))


def _throughput() -> dict[str, float]:
    rng = np.random.default_rng(SEED)
    ups = [[rng.standard_normal(1_000_000, dtype=np.float32)] for _ in range(100)]
    w = rng.integers(10, 100, size=100).astype(np.float64)
    weighted_mean(ups, w)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        weighted_mean(ups, w)
        times.append(time.perf_counter() - t0)
    return {"median_ms": float(np.median(times) * 1000), "min_ms": float(np.min(times) * 1000)}


def main() -> None:
    t_start = time.perf_counter()
    env = _setup()
    runs: dict[str, dict[str, Any]] = {}
    runs["fedavg"] = _run(env, "fedavg (flat)", rounds=ROUNDS_LONG)
    runs["topk"] = _run(
        env,
        "topk 1% + EF (flat)",
        rounds=ROUNDS_LONG,
        compressor=CompressorConfig(name="topk", ratio=0.01),
    )
    clean_50 = runs["fedavg"]["accuracy_by_round"][ROUNDS]
    attacks: dict[str, dict[str, dict[str, Any]]] = {}
    for attack in ("sign_flip", "alie"):
        attacks[attack] = {}
        for rule in RULES:
            attacks[attack][rule] = _run(
                env,
                f"{attack} 20% / {rule}",
                attack=AttackConfig(name=attack, fraction=0.2),
                aggregation=AggregationConfig(rule=rule),
                byzantine_fraction=0.2,
            )
    runs["hier"] = _run(env, "HierFAVG k2=5", mode=FlMode.HIERARCHICAL, k2=5, rounds=ROUNDS // 5)
    thr = _throughput()
    print(f"FedAvg of 100 x 1M float32: {thr['median_ms']:.1f} ms", flush=True)

    fed, topk, hier = runs["fedavg"], runs["topk"], runs["hier"]
    up_ratio = fed["bytes_total"]["device_to_edge"] / topk["bytes_total"]["device_to_edge"]
    acc_gap_topk = (fed["final_accuracy"] - topk["final_accuracy"]) * 100
    flat_e2c = _bytes_until(fed, "edge_to_cloud", ROUNDS)
    hier_e2c = hier["bytes_total"]["edge_to_cloud"]
    hier_gap = (clean_50 - hier["final_accuracy"]) * 100
    # a flat FedAvg whose edges pre-sum their devices' updates (one model per edge per round)
    presum_e2c = ROUNDS * N_EDGE * 4 * fed["dim"]
    targets = [
        target("topk 1% + EF: accuracy gap to FedAvg", acc_gap_topk, "<=", 1.0, "points"),
        target("topk 1% + EF: uplink bytes reduction", up_ratio, ">=", 50, "x"),
    ]
    summary: dict[str, Any] = {}
    for attack in ("sign_flip", "alie"):
        res = attacks[attack]
        robust = {r: res[r]["final_accuracy"] for r in RULES if r != "fedavg"}
        best = max(robust, key=lambda r: robust[r])
        gap = (clean_50 - robust[best]) * 100
        fedavg_loss = (clean_50 - res["fedavg"]["final_accuracy"]) * 100
        targets.append(
            target(f"{attack} 20%: best robust rule gap to clean", gap, "<=", 3.0, "points")
        )
        summary[attack] = {
            "clean_accuracy": clean_50,
            "accuracy": {r: res[r]["final_accuracy"] for r in RULES},
            "best_rule": best,
            "best_gap_points": gap,
            "fedavg_loss_points": fedavg_loss,
        }
    summary["alie"]["z"] = alie_z(N_DEV, int(0.2 * N_DEV))
    targets += [
        target("HierFAVG k2=5: accuracy gap to flat FedAvg", hier_gap, "<=", 1.0, "points"),
        target(
            "HierFAVG k2=5: edge->cloud bytes reduction vs flat", flat_e2c / hier_e2c, ">=", 4, "x"
        ),
        target(
            "FedAvg of 100 updates x 1M float32: time per aggregation",
            thr["median_ms"],
            "<=",
            1000,
            "ms",
        ),
    ]
    details = {
        "setup": {
            "dataset": "mnist (5000 real digits), 20% test",
            "devices": N_DEV,
            "edge_servers": N_EDGE,
            "partition": "dirichlet alpha=0.5, min 10 samples",
            "model": "mlp width 16",
            "params": fed["dim"],
            "local_steps": 10,
            "batch_size": 32,
            "client_lr": 0.05,
            "participation": "all devices every round",
            "malicious_fraction": 0.2,
            "byzantine_fraction_assumed_by_rules": 0.2,
        },
        "compression": {
            "fedavg_accuracy": fed["final_accuracy"],
            "topk_accuracy": topk["final_accuracy"],
            "rounds": ROUNDS_LONG,
            "uplink_bytes": {
                "fedavg": fed["bytes_total"]["device_to_edge"],
                "topk": topk["bytes_total"]["device_to_edge"],
            },
            "curves": {"fedavg": fed["accuracy_by_round"], "topk": topk["accuracy_by_round"]},
        },
        "robustness": summary,
        "hierarchical": {
            "flat_accuracy_at_50": clean_50,
            "hier_accuracy": hier["final_accuracy"],
            "cloud_rounds": ROUNDS // 5,
            "edge_rounds": ROUNDS,
            "edge_to_cloud_bytes": {
                "flat_relay": flat_e2c,
                "hier": hier_e2c,
                "flat_if_edges_presum": presum_e2c,
            },
            "reduction_vs_presumming_edges": presum_e2c / hier_e2c,
            "curves": {"flat": fed["accuracy_by_round"], "hier": hier["accuracy_by_round"]},
        },
        "aggregation_throughput": {"updates": 100, "params": 1_000_000, **thr},
        "wall_s": {**{k: v["wall_s"] for k, v in runs.items()},
                   **{f"{a}/{r}": attacks[a][r]["wall_s"] for a in attacks for r in RULES}},
        "total_wall_s": round(time.perf_counter() - t_start, 1),
    }  # fmt: skip
    write_results("train", targets, details)


if __name__ == "__main__":
    main()
