"""Privacy benchmark: DP-FedAvg accuracy vs epsilon, secure-aggregation overhead.

Writes ``benchmarks/results/privacy.json``.

- DP: MNIST (bundled 5000-image subset) split IID across ``DEVICES`` simulated devices,
  flat FedAvg in the embedded engine, ``PER_ROUND`` devices sampled per round, ``ROUNDS``
  rounds. For each target epsilon (delta 1e-5) the noise multiplier is calibrated with
  dp-accounting for exactly these rounds and sampling rate; clipping is adaptive
  (median of update norms, Andrew et al.). The non-private run uses the same engine,
  seed and data with plain sample-weighted FedAvg.
- Secure aggregation: one round of ``SECAGG_DEVICES`` devices in one session (real
  X25519/HKDF/AES/Shamir protocol) against the same round with plain aggregation; bytes
  are the protocol's serialized messages vs float32 updates, time is the round's wall time.
"""

from __future__ import annotations

import math
import os
import time

import torch

from _common import target, write_results
from edgeintel.data import load_dataset, partition, train_test_split
from edgeintel.models import build_model
from edgeintel.training import (
    ClientSpec,
    FederatedConfig,
    FederatedEngine,
)
from edgeintel.training.dp import ClipMode, DPConfig, noise_multiplier_for_epsilon
from edgeintel.training.private import PrivacyStrategy
from edgeintel.training.secagg import SecAggConfig

DEVICES = int(os.environ.get("BENCH_DP_DEVICES", 1000))
PER_ROUND = int(os.environ.get("BENCH_DP_PER_ROUND", 200))
ROUNDS = int(os.environ.get("BENCH_DP_ROUNDS", 25))
EPSILONS = (2.0, 4.0, 8.0)
DELTA = 1e-5
SECAGG_DEVICES = 100
SEED = 0


def _engine(
    n_devices: int,
    per_round: int,
    rounds: int,
    dp: DPConfig | None = None,
    secagg: SecAggConfig | None = None,
) -> FederatedEngine:
    ds = load_dataset("mnist")
    tr, te = train_test_split(ds.y, 0.25, seed=SEED)
    parts = partition(ds.y[tr], n_devices, "iid", seed=SEED)
    clients = [ClientSpec(f"d{i}", "cloud") for i in range(n_devices)]
    cfg = FederatedConfig(
        rounds=rounds,
        clients_per_round=per_round,
        local_steps=5,
        batch_size=16,
        lr=0.1,
        eval_every=rounds,
        seed=SEED,
    )
    strategy = PrivacyStrategy(
        cfg.aggregation, dp=dp, secagg=secagg, population=n_devices, clients_per_round=per_round
    )
    model = build_model("mlp", ds.x.shape[1:], ds.num_classes, width=16, seed=SEED)
    return FederatedEngine(
        model, ds.x[tr], ds.y[tr], parts, clients, ds.x[te], ds.y[te], cfg,
        num_classes=ds.num_classes, strategy=strategy,
    )  # fmt: skip


def dp_curve() -> tuple[dict[str, object], float, float]:
    q = PER_ROUND / DEVICES
    runs: dict[str, object] = {}
    t0 = time.perf_counter()
    eng = _engine(DEVICES, PER_ROUND, ROUNDS)
    eng.run()
    base = eng.state.history[-1].accuracy or 0.0
    runs["no_dp"] = {"accuracy": base, "seconds": time.perf_counter() - t0}
    print(f"no DP: accuracy {base:.4f}")
    acc8, eps8 = 0.0, float("inf")
    for eps in EPSILONS:
        z = noise_multiplier_for_epsilon(eps, q, ROUNDS, DELTA)
        dp = DPConfig(
            noise_multiplier=z,
            clip_norm=0.5,
            clipping=ClipMode.ADAPTIVE,
            target_epsilon=eps,
            target_delta=DELTA,
        )
        t0 = time.perf_counter()
        eng = _engine(DEVICES, PER_ROUND, ROUNDS, dp=dp)
        eng.run()
        strat = eng.strategy
        assert isinstance(strat, PrivacyStrategy) and strat.dp is not None
        acc = eng.state.history[-1].accuracy or 0.0
        spent = strat.dp.accountant.epsilon()
        runs[f"epsilon_{eps:g}"] = {
            "accuracy": acc,
            "epsilon_spent": spent,
            "noise_multiplier": z,
            "rounds_run": eng.state.round,
            "final_clip_norm": strat.dp.clip_norm,
            "epsilon_vs_round": [round(e["epsilon"], 4) for e in strat.epsilon_history],
            "seconds": time.perf_counter() - t0,
        }
        print(f"epsilon {eps:g}: z={z:.3f} accuracy {acc:.4f} (spent {spent:.3f})")
        if eps == 8.0:
            acc8, eps8 = acc, spent
    details = {
        "dataset": "mnist (bundled 5000-image subset, 25% test)",
        "model": "mlp width 16",
        "devices": DEVICES,
        "devices_per_round": PER_ROUND,
        "sampling_rate": q,
        "rounds": ROUNDS,
        "delta": DELTA,
        "local_steps": 5,
        "clipping": "adaptive (target quantile 0.5)",
        "accountant": "dp-accounting RDP, Poisson-subsampled Gaussian per round",
        "runs": runs,
    }
    return details, (base - acc8) * 100.0, eps8


# SecAgg+ degree: 2 * ceil(log2(n)) neighbours (Bell et al. 2020 take k = O(log n))
SECAGG_PLUS_K = 2 * math.ceil(math.log2(SECAGG_DEVICES))


def secagg_overhead() -> dict[str, float]:
    out: dict[str, float] = {"secagg_plus_neighbors": float(SECAGG_PLUS_K)}
    configs = (
        ("plain", None),
        ("secagg", SecAggConfig()),
        ("secagg_plus", SecAggConfig(neighbors=SECAGG_PLUS_K)),
    )
    for name, sec in configs:
        eng = _engine(SECAGG_DEVICES, SECAGG_DEVICES, 1, secagg=sec)
        t0 = time.perf_counter()
        eng.run()
        out[f"{name}_round_s"] = time.perf_counter() - t0
        rec = eng.state.history[-1]
        out[f"{name}_uplink_bytes"] = float(rec.bytes["device_to_edge"])
        out[f"{name}_downlink_bytes"] = float(rec.bytes["edge_to_device"])
        if sec is not None:
            h = eng.strategy.secagg_history[-1]  # type: ignore[attr-defined]
            out[f"{name}_protocol_uplink_bytes"] = h["bytes_up"]
            out[f"{name}_protocol_downlink_bytes"] = h["bytes_down"]
            out[f"{name}_protocol_seconds"] = h["seconds"]
        out["model_parameters"] = float(eng.dim)
    for name in ("secagg", "secagg_plus"):
        up = out[f"{name}_protocol_uplink_bytes"]
        out[f"{name}_uplink_bytes_ratio"] = up / out["plain_uplink_bytes"]
        down = out[f"{name}_protocol_downlink_bytes"]
        out[f"{name}_extra_downlink_bytes_per_device"] = down / SECAGG_DEVICES
        out[f"{name}_round_time_ratio"] = out[f"{name}_round_s"] / out["plain_round_s"]
    return out


def main() -> None:
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    details, drop, eps8 = dp_curve()
    sec = secagg_overhead()
    details["secure_aggregation_100_devices"] = sec
    details["total_seconds"] = time.perf_counter() - t0
    for name in ("secagg", "secagg_plus"):
        print(
            f"{name}: uplink x{sec[f'{name}_uplink_bytes_ratio']:.2f}, "
            f"round time {sec[f'{name}_round_s']:.2f}s vs {sec['plain_round_s']:.2f}s"
        )
    targets = [
        target("dp_accuracy_drop_at_epsilon_8", drop, "<=", 5.0, "points"),
        target("dp_epsilon_spent", eps8, "<=", 8.0, "epsilon (delta 1e-5)"),
        target("dp_devices", DEVICES, ">=", 500, "devices"),
        # the issue asks for secure aggregation's bytes and time vs plain, with no goal: the
        # bounds below are ours (documented in docs/privacy.md)
        target(
            "secagg_uplink_bytes_ratio_100_devices",
            sec["secagg_uplink_bytes_ratio"],
            "<=",
            3,
            "x plain",
        ),
        target(
            "secagg_round_time_ratio_100_devices",
            sec["secagg_round_time_ratio"],
            "<=",
            300,
            "x plain",
        ),
        target(
            f"secagg_plus_k{SECAGG_PLUS_K}_uplink_bytes_ratio_100_devices",
            sec["secagg_plus_uplink_bytes_ratio"],
            "<=",
            3,
            "x plain",
        ),
        target(
            f"secagg_plus_k{SECAGG_PLUS_K}_round_time_ratio_100_devices",
            sec["secagg_plus_round_time_ratio"],
            "<=",
            30,
            "x plain",
        ),
    ]
    write_results("privacy", targets, details)


if __name__ == "__main__":
    main()
