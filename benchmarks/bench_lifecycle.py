"""Benchmark of the fleet lifecycle (issue 22): label-free drift detection on devices.

The real shift: MNIST (5000 real handwritten digits) dealt to 6 devices under a Dirichlet
label-skew partition (alpha 0.5), as a federated fleet holds it. Each device keeps 60 % of
its shard as the training reference (the drift monitor's only data: features, thresholds)
and streams its other 40 % (inputs drawn at random, 1 input/s). At the onset its stream
switches to another device's held-out data (the next device: a camera moved to another
site, another user's handwriting mix). The deployed model is a classifier (PCA 50 +
logistic regression) trained on the fleet's references; the monitor watches its inputs (KS
per principal component with Bonferroni, RBF MMD) and its top-class confidence, at a user
rate of 1 false alarm per device-hour.

Figures, 3 seeds x 6 devices:

* detection delay: inputs from the onset to the first alarm (400 unshifted inputs, then up
  to 1000 shifted; a device never alarmed counts as a miss, delay infinite); the median;
* false alarms per device-hour: alarms raised (a firing test after a quiet one: what a
  device reports) on 2 unshifted device-hours of each device (3600 inputs each); the count
  of every firing test, consecutive ones included, is in the details.

Targets (issue 22): median delay <= 200 inputs; <= 1 false alarm per device-hour.
Writes benchmarks/results/lifecycle.json.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np

from _common import mean_std, target, write_results
from edgeintel.data import load_dataset
from edgeintel.data.partition import dirichlet_partition
from edgeintel.monitoring import DriftConfig, DriftMonitor

SEEDS = (0, 1, 2)
DEVICES = 4
PRE, POST, HOUR, HOURS = 400, 1000, 3600, 2
CONFIG = {"input_hz": 1.0, "false_alarms_per_hour": 1.0, "window": 100, "stride": 25}


def _model(x: np.ndarray, y: np.ndarray, seed: int) -> Any:
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    clf = make_pipeline(PCA(50, random_state=seed), LogisticRegression(max_iter=300))
    return clf.fit(x, y)


def run_seed(seed: int, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Delays and false alarms of every device of one seed's fleet."""
    rng = np.random.default_rng(seed)
    shards = dirichlet_partition(y, DEVICES, rng, alpha=0.5, min_samples=800)
    train, refs, held = [], [], []
    for idx in shards:
        idx = rng.permutation(idx)
        a, b = int(0.3 * len(idx)), int(0.65 * len(idx))
        train.append(idx[:a])  # the model's training data
        refs.append(idx[a:b])  # the monitor's reference: data the model did not train on
        held.append(idx[b:])  # the device's live stream
    model = _model(x[np.concatenate(train)], y[np.concatenate(train)], seed)
    probs = model.predict_proba(x)  # the model's output on every input (streams draw from it)
    delays: list[float] = []
    fired_first: list[str] = []
    alarms_hour: list[int] = []
    tests_hour: list[int] = []
    by_detector: dict[str, int] = {}
    for d in range(DEVICES):
        cfg = DriftConfig(seed=seed * 100 + d, **CONFIG)  # type: ignore[arg-type]
        mon = DriftMonitor(cfg, x[refs[d]], probs[refs[d]])
        # unshifted device-hours: false alarms (raised) and alarmed tests
        for _ in range(HOURS):
            mon.reset()
            for i in rng.choice(held[d], HOUR):
                s = mon.update(x[i], probs[i])
                for name in s.fired:
                    by_detector[name] = by_detector.get(name, 0) + 1
            alarms_hour.append(s.alarms)
            tests_hour.append(s.alarmed_tests)
        # onset of a real shift: another device's data
        mon.reset()
        other = held[(d + 1) % DEVICES]
        stream = np.concatenate([rng.choice(held[d], PRE), rng.choice(other, POST)])
        delay = float("inf")
        for k, i in enumerate(stream):
            s = mon.update(x[i], probs[i])
            if s.drift and k >= PRE:
                delay = float(k + 1 - PRE)
                fired_first.append(",".join(s.fired))
                break
        delays.append(delay)
    return {
        "delays": delays,
        "alarms_per_hour": alarms_hour,
        "alarmed_tests_per_hour": tests_hour,
        "fired": fired_first,
        "false_alarms_by_detector": by_detector,
    }


def main() -> None:
    t0 = time.perf_counter()
    data = load_dataset("mnist")
    x = data.x.reshape(len(data.x), -1).astype(np.float64)
    y = data.y
    per_seed = {seed: run_seed(seed, x, y) for seed in SEEDS}
    delays = [v for r in per_seed.values() for v in r["delays"]]
    alarms = [v for r in per_seed.values() for v in r["alarms_per_hour"]]
    median_delay = float(np.median(delays))
    fa_rate = float(np.mean(alarms))
    targets = [
        target(
            "drift detection delay (median inputs after onset)", median_delay, "<=", 200, "inputs"
        ),
        target("false alarms on unshifted data", fa_rate, "<=", 1.0, "per device-hour"),
    ]
    details = {
        "dataset": "mnist (5000 real digits), dirichlet alpha 0.5 over 6 devices",
        "shift": "a device's stream switches to the next device's held-out data",
        "config": CONFIG,
        "detectors": list(DriftConfig().detectors),
        "seeds": list(SEEDS),
        "median_delay_per_seed": {s: float(np.median(r["delays"])) for s, r in per_seed.items()},
        "delays": delays,
        "missed": int(sum(np.isinf(delays))),
        "false_alarms_per_device_hour": mean_std([float(a) for a in alarms]),
        "alarmed_tests_per_device_hour": mean_std(
            [float(v) for r in per_seed.values() for v in r["alarmed_tests_per_hour"]]
        ),
        "device_hours": len(alarms),
        "false_alarms_by_detector": {s: r["false_alarms_by_detector"] for s, r in per_seed.items()},
        "first_firing_detectors": [f for r in per_seed.values() for f in r["fired"]],
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    write_results("lifecycle", targets, details)


if __name__ == "__main__":
    main()
