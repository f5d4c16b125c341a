"""Edge training benchmark: compression, robustness, hierarchy, aggregation throughput.

Real MNIST (the bundled 5000 digits): 20 % test (1000 digits), 10 % of the rest kept
as a server-side validation split for selection (best robust rule), the remaining
3600 split over ``N_DEV`` devices with Dirichlet(0.5) label skew; ``N_EDGE`` edge
servers, one backhaul hop each. Model: the zoo MLP (width 16: 784-64-64-10, 55k
parameters). Every device takes part in every round and runs 10 local SGD steps
(batch 32, lr 0.05). Every configuration runs with each of ``SEEDS`` (partition, model
initialisation and the engine's sampling); targets are on the mean over seeds of the
test accuracy, and details keep the standard deviation and every seed's value.

Baselines get equal treatment: every flat run (FedAvg, top-k, each attack and rule)
trains for the same ``ROUNDS`` rounds; HierFAVG runs ``ROUNDS / K2`` cloud rounds of
``K2`` edge rounds, i.e. the same device computation. Byte ratios that the encoding
or the schedule fixes (top-k's index+value format, ``K2`` for hierarchical backhaul
against edges that pre-sum) are derived figures under ``details``.

Top-k 1 % runs with error feedback and DGC's momentum correction (Lin et al. 2018). The
sign-flip and IPM attacks use ``N_DEV`` devices with 20 % malicious; ALIE runs in Baruch
et al. 2019's own setting (``ALIE_DEV`` = 50 devices, 24 % colluding, the paper's z for
that n and f) against a clean FedAvg baseline on the same 50 shards.

Writes benchmarks/results/train.json.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import mean_std, target, write_results
from edgeintel.data import load_dataset, partition, train_test_split
from edgeintel.errors import TrainingError
from edgeintel.models import build_model
from edgeintel.models.train import evaluate_accuracy
from edgeintel.network import Hop
from edgeintel.training.aggregate import AggregationConfig, weighted_mean
from edgeintel.training.attacks import AttackConfig, alie_z
from edgeintel.training.compressors import CompressorConfig
from edgeintel.training.engine import FederatedEngine
from edgeintel.training.rounds import ClientSpec, FederatedConfig, FlMode

SEEDS = tuple(range(int(os.environ.get("BENCH_TRAIN_SEEDS", 3))))
N_DEV = int(os.environ.get("BENCH_TRAIN_DEVICES", 30))
N_EDGE = 5
ROUNDS = int(os.environ.get("BENCH_TRAIN_ROUNDS", 30))
K2 = 5
EVAL_EVERY = 3
MALICIOUS = 0.2
RULES = ["fedavg", "multi_krum", "median", "trimmed_mean"]
#: top-k 1 % with error feedback and DGC's momentum correction + momentum factor masking
#: (Lin et al. 2018, momentum 0.9 as in the paper); FedAvg itself has no momentum
TOPK = CompressorConfig(name="topk", ratio=0.01, momentum=0.9)
#: attacks that hurt undefended FedAvg: sign flip scaled by 4 (the plain mean of 80 %
#: honest u and 20 % -4u is ~0), IPM with epsilon 10 (> (1 - f/n) / (f/n) = 4, so the
#: mean points against the honest direction), ALIE with the z of Baruch et al. from n, f
#: ALIE in Baruch et al. 2019's own setting: 50 workers, fewer than 25 % colluding (12),
#: z = Phi^-1((n - s) / n) with s = floor(n / 2 + 1) - f (0.58), here on non-IID shards
ALIE_DEV = 50
ALIE_FRACTION = 0.24
ATTACKS = {
    "sign_flip_x4": AttackConfig(name="sign_flip", fraction=MALICIOUS, scale=4.0),
    "ipm_eps10": AttackConfig(name="ipm", fraction=MALICIOUS, epsilon=10.0),
    "alie_24pct": AttackConfig(name="alie", fraction=ALIE_FRACTION),
}
#: (devices, malicious fraction) of each attack's runs; its clean baseline has as many
ATTACK_SETUP = {
    "sign_flip_x4": (N_DEV, MALICIOUS),
    "ipm_eps10": (N_DEV, MALICIOUS),
    "alie_24pct": (ALIE_DEV, ALIE_FRACTION),
}


def _setup(seed: int, split: dict[str, np.ndarray], n_dev: int = N_DEV) -> dict[str, Any]:
    parts = partition(split["y"], n_dev, "dirichlet", seed, alpha=0.5, min_samples=10)
    clients = [ClientSpec(f"dev-{i}", f"edge-{i % N_EDGE}") for i in range(n_dev)]
    paths = {f"edge-{e}": [Hop(1000.0, 5.0)] for e in range(N_EDGE)}
    return {**split, "parts": parts, "clients": clients, "paths": paths, "seed": seed}


def _split() -> dict[str, Any]:
    ds = load_dataset("mnist")
    tr, te = train_test_split(ds.y, 0.2, seed=0)
    fit, val = train_test_split(ds.y[tr], 0.1, seed=0)
    fit, val = tr[fit], tr[val]
    return {
        "x": ds.x[fit], "y": ds.y[fit], "xv": ds.x[val], "yv": ds.y[val],
        "xt": ds.x[te], "yt": ds.y[te], "shape": ds.sample_shape,
    }  # fmt: skip


def _run(env: dict[str, Any], name: str, **cfg: Any) -> dict[str, Any]:
    seed = env["seed"]
    base: dict[str, Any] = {
        "rounds": ROUNDS, "local_steps": 10, "batch_size": 32, "lr": 0.05,
        "eval_every": EVAL_EVERY, "seed": seed,
    }  # fmt: skip
    config = FederatedConfig(**{**base, **cfg})
    model = build_model("mlp", env["shape"], 10, width=16, seed=seed)
    eng = FederatedEngine(
        model, env["x"], env["y"], env["parts"], env["clients"], env["xt"], env["yt"],
        config, 10, env["paths"],
    )  # fmt: skip
    t0 = time.perf_counter()
    diverged = None
    try:
        eng.run()
    except (
        TrainingError
    ) as exc:  # e.g. undefended FedAvg under a scaled attack: a result, not a crash
        diverged = str(exc)
    wall = time.perf_counter() - t0
    hist = eng.state.history
    cum = {k: int(np.cumsum([r.bytes[k] for r in hist])[-1]) for k in hist[0].bytes}
    test_acc = (
        hist[-1].accuracy
        if diverged is None
        else evaluate_accuracy(eng.global_model(), env["xt"], env["yt"])
    )
    out = {
        "diverged": diverged,
        "test_accuracy": test_acc,
        "val_accuracy": evaluate_accuracy(eng.global_model(), env["xv"], env["yv"]),
        "accuracy_by_round": {r.round: r.accuracy for r in hist if r.accuracy is not None},
        "bytes_total": cum,
        "bytes_by_round": [r.bytes for r in hist],
        "wall_s": round(wall, 2),
        "dim": eng.dim,
    }
    print(
        f"seed {seed} {name:28s} test {out['test_accuracy']:.4f} val {out['val_accuracy']:.4f}"
        f" {wall:6.1f} s",
        flush=True,
    )
    return out


def _throughput() -> dict[str, float]:
    rng = np.random.default_rng(0)
    ups = [[rng.standard_normal(1_000_000, dtype=np.float32)] for _ in range(100)]
    w = rng.integers(10, 100, size=100).astype(np.float64)
    weighted_mean(ups, w)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        weighted_mean(ups, w)
        times.append(time.perf_counter() - t0)
    return {"median_ms": float(np.median(times) * 1000), "min_ms": float(np.min(times) * 1000)}


def _stat(runs: list[dict[str, Any]], key: str = "test_accuracy") -> dict[str, Any]:
    return mean_std([r[key] for r in runs])


def main() -> None:
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    split = _split()
    names = ["fedavg", f"fedavg_{ALIE_DEV}", "topk", "topk_ef_only", "hier",
             *(f"{a}/{r}" for a in ATTACKS for r in RULES)]  # fmt: skip
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for seed in SEEDS:
        env = _setup(seed, split)
        envs = {N_DEV: env, ALIE_DEV: _setup(seed, split, ALIE_DEV)}
        runs["fedavg"].append(_run(env, "fedavg (flat)"))
        runs[f"fedavg_{ALIE_DEV}"].append(_run(envs[ALIE_DEV], f"fedavg {ALIE_DEV} devices"))
        runs["topk"].append(_run(env, "topk 1% + EF + DGC m=0.9", compressor=TOPK))
        runs["topk_ef_only"].append(
            _run(env, "topk 1% + EF", compressor=CompressorConfig(name="topk", ratio=0.01))
        )
        runs["hier"].append(
            _run(env, f"HierFAVG k2={K2}", mode=FlMode.HIERARCHICAL, k2=K2, rounds=ROUNDS // K2)
        )
        for attack, acfg in ATTACKS.items():
            n_dev, frac = ATTACK_SETUP[attack]
            for rule in RULES:
                runs[f"{attack}/{rule}"].append(
                    _run(
                        envs[n_dev],
                        f"{attack} {frac:.0%} / {rule}",
                        attack=acfg,
                        aggregation=AggregationConfig(rule=rule),
                        byzantine_fraction=frac,
                    )
                )
    thr = _throughput()
    print(f"FedAvg of 100 x 1M float32: {thr['median_ms']:.1f} ms", flush=True)

    clean = _stat(runs["fedavg"])
    topk = _stat(runs["topk"])
    topk_ef = _stat(runs["topk_ef_only"])
    hier = _stat(runs["hier"])
    dim = runs["fedavg"][0]["dim"]
    targets = [
        target(
            "topk 1% + EF + DGC momentum correction (m=0.9): accuracy gap to FedAvg "
            "(mean of seeds)",
            (clean["mean"] - topk["mean"]) * 100, "<=", 1.0, "points",
        ),
    ]  # fmt: skip
    robustness: dict[str, Any] = {}
    for attack, acfg in ATTACKS.items():
        n_dev, frac = ATTACK_SETUP[attack]
        base = clean if n_dev == N_DEV else _stat(runs[f"fedavg_{n_dev}"])
        acc = {r: _stat(runs[f"{attack}/{r}"]) for r in RULES}
        val = {r: _stat(runs[f"{attack}/{r}"], "val_accuracy") for r in RULES}
        robust = [r for r in RULES if r != "fedavg"]
        best = max(robust, key=lambda r: val[r]["mean"])  # selected on validation
        worst = min(robust, key=lambda r: acc[r]["mean"])
        fedavg_loss = (base["mean"] - acc["fedavg"]["mean"]) * 100
        worst_loss = (base["mean"] - acc[worst]["mean"]) * 100
        gap = (base["mean"] - acc[best]["mean"]) * 100
        pct = f"{frac:.0%}"
        if acfg.name == "alie":
            # Baruch et al. 2019 (NeurIPS, "A Little Is Enough"): the attack stays within the
            # honest updates' spread, so it is built to defeat the robust rules (they "select
            # the byzantine workers while discarding legitimate ones"), not the plain mean,
            # which it moves by at most f/n * z * sigma. Its abstract's figure is for CIFAR10
            # ("20% of corrupt workers are sufficient to degrade a CIFAR10 model accuracy by
            # 50%"); for MNIST the abstract claims backdoors only, and the paper's MNIST
            # convergence table was not available here, so the 10-point goal has no MNIST
            # source and is kept (missed) rather than rewritten to a figure we cannot quote.
            targets.append(target(
                f"{attack} {pct}, {n_dev} devices (Baruch et al. 2019 setting): accuracy loss "
                f"of the robust rule it hurts most ({worst})", worst_loss, ">=", 10.0, "points",
            ))  # fmt: skip
        else:
            targets.append(
                target(f"{attack} {pct}: plain FedAvg accuracy loss", fedavg_loss, ">=", 10.0,
                       "points")
            )  # fmt: skip
        targets.append(
            target(
                f"{attack} {pct}: best robust rule ({best}, chosen on validation) gap to clean",
                gap, "<=", 3.0, "points",
            ),
        )  # fmt: skip
        robustness[attack] = {
            "attack": {k: v for k, v in vars(acfg).items() if v is not None},
            "devices": n_dev,
            "malicious_fraction": frac,
            "worst_robust_rule": worst,
            "worst_robust_rule_loss_points": worst_loss,
            "clean_test_accuracy": base,
            "test_accuracy": acc,
            "val_accuracy": val,
            "best_rule": best,
            "best_gap_points": gap,
            "fedavg_loss_points": fedavg_loss,
        }
    robustness["alie_24pct"]["z"] = alie_z(ALIE_DEV, round(ALIE_FRACTION * ALIE_DEV))
    robustness["alie_24pct"]["note"] = (
        "target rewritten (issue 25): 'plain FedAvg loses >= 10 points' is not what the "
        "paper shows; ALIE hides in the honest spread and defeats robust rules (Baruch et al. "
        "2019, NeurIPS, abstract and section 3), so the target is on the robust rule it hurts "
        "most; plain FedAvg's loss stays here: fedavg_loss_points. The abstract's degradation "
        "figure is for CIFAR10 ('20% of corrupt workers are sufficient to degrade a CIFAR10 "
        "model accuracy by 50%'), not MNIST; the 10-point goal has no MNIST source and is kept"
    )

    # hierarchy: equal device computation (ROUNDS edge rounds) and equal backhaul bytes
    hier_gap = (clean["mean"] - hier["mean"]) * 100
    cloud_rounds = ROUNDS // K2
    flat_same_bytes = mean_std([r["accuracy_by_round"][cloud_rounds] for r in runs["fedavg"]])
    hier_e2c = runs["hier"][0]["bytes_total"]["edge_to_cloud"]
    flat_relay_e2c = runs["fedavg"][0]["bytes_total"]["edge_to_cloud"]
    # flat FedAvg whose edges pre-sum their devices' updates: one model per edge per round
    presum_e2c = ROUNDS * N_EDGE * 4 * dim
    targets += [
        target(
            f"HierFAVG k2={K2}: accuracy gap to flat FedAvg (same device computation)",
            hier_gap, "<=", 1.0, "points",
        ),
        target(
            f"HierFAVG k2={K2}: accuracy gain over flat FedAvg with pre-summing edges at "
            "equal edge->cloud bytes",
            (hier["mean"] - flat_same_bytes["mean"]) * 100, ">=", 0.0, "points",
        ),
        target(
            "FedAvg of 100 updates x 1M float32: time per aggregation",
            thr["median_ms"], "<=", 1000, "ms",
        ),
    ]  # fmt: skip
    up_fed = runs["fedavg"][0]["bytes_total"]["device_to_edge"]
    up_topk = runs["topk"][0]["bytes_total"]["device_to_edge"]
    details = {
        "setup": {
            "dataset": "mnist (5000 real digits): 1000 test, 400 validation, 3600 on devices",
            "test_samples": len(split["yt"]),
            "validation_samples": len(split["yv"]),
            "devices": N_DEV,
            "edge_servers": N_EDGE,
            "partition": "dirichlet alpha=0.5, min 10 samples",
            "model": "mlp width 16",
            "params": dim,
            "rounds": ROUNDS,
            "local_steps": 10,
            "batch_size": 32,
            "client_lr": 0.05,
            "participation": "all devices every round",
            "seeds": list(SEEDS),
            "malicious_fraction": MALICIOUS,
            "byzantine_fraction_assumed_by_rules": MALICIOUS,
            "statistic": "mean and sample std over seeds of test accuracy",
        },
        "compression": {
            "fedavg_test_accuracy": clean,
            "topk_test_accuracy": topk,
            "topk_config": {k: v for k, v in vars(TOPK).items() if v is not None},
            "topk_ef_only_test_accuracy": topk_ef,
            "topk_ef_only_gap_points": (clean["mean"] - topk_ef["mean"]) * 100,
            "note": "the target run adds DGC's momentum correction (u = 0.9 u + update, "
            "v += u, send top-k(v), clear u and v where sent) to error feedback; the EF-only "
            "run is kept for comparison. FedAvg has no momentum, so part of the top-k run's "
            "speed comes from the momentum itself.",
            "derived": {
                "note": "fixed by the encoding (1% of values as float32 + uint16 index)",
                "uplink_bytes": {"fedavg": up_fed, "topk": up_topk},
                "uplink_bytes_reduction_x": up_fed / up_topk,
            },
            "curves_seed0": {
                "fedavg": runs["fedavg"][0]["accuracy_by_round"],
                "topk": runs["topk"][0]["accuracy_by_round"],
                "topk_ef_only": runs["topk_ef_only"][0]["accuracy_by_round"],
            },
        },
        "robustness": robustness,
        "hierarchical": {
            "flat_test_accuracy": clean,
            "hier_test_accuracy": hier,
            "flat_test_accuracy_at_equal_backhaul": flat_same_bytes,
            "cloud_rounds": cloud_rounds,
            "edge_rounds": ROUNDS,
            "derived": {
                "note": "byte counts follow from the schedule: HierFAVG sends one model per "
                f"edge per cloud round, i.e. k2={K2} times fewer than edges that pre-sum",
                "edge_to_cloud_bytes": {
                    "flat_edges_relay_every_update": flat_relay_e2c,
                    "flat_edges_presum": presum_e2c,
                    "hier": hier_e2c,
                },
                "reduction_vs_presumming_edges_x": presum_e2c / hier_e2c,
                "reduction_vs_relaying_edges_x": flat_relay_e2c / hier_e2c,
            },
            "curves_seed0": {
                "flat": runs["fedavg"][0]["accuracy_by_round"],
                "hier": runs["hier"][0]["accuracy_by_round"],
            },
        },
        "aggregation_throughput": {"updates": 100, "params": 1_000_000, **thr},
        "wall_s": {k: round(sum(r["wall_s"] for r in v), 1) for k, v in runs.items()},
        "total_wall_s": round(time.perf_counter() - t_start, 1),
    }
    write_results("train", targets, details)


if __name__ == "__main__":
    main()
