"""bench_sim's targets from the simsweep branch (issue 13): calibration against the runtime and
the Gymnasium environment's step rate. ``bench_sim.main`` calls ``extra_targets(details)``.

* **Calibration**: ``edgeintel run`` deploys ``scenarios/calibration.yaml`` with real processes
  (one ``edgeintel serve``, 6 device agents over emulated links, 20 s); the simulator is fitted
  on the near group and predicts the far group's latency p50/p95 and the bytes on every
  device link (``edgeintel.sim.calibrate``). Goal: each ratio simulated / measured within 15 %
  (value = max(r, 1/r) <= 1.15).
* **Gymnasium step rate**: ``OffloadEnv`` on the default scenario (20 devices, 5 Hz, 5 s
  episodes, per-task decisions), random actions, 50,000 steps; steps per CPU second of this
  process (goal >= 10,000; wall-clock rate in details, the machine is shared).
* derived: a ``LinearOffloadPolicy`` trained by the cross-entropy method in the env on the
  calibration fleet, its held-out return against the fixed local / edge / cloud policies,
  the cost model's latency-greedy choice and random actions.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import target

STEPS = 50_000


def _calibration(details: dict[str, Any]) -> list[dict[str, Any]]:
    from edgeintel.scenario import load_scenario
    from edgeintel.sim.calibrate import (
        CALIBRATION_SCENARIO,
        TOLERANCE,
        calibrate,
        calibration_targets,
        measure_runtime,
    )

    sc = load_scenario(CALIBRATION_SCENARIO)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="calib_") as tmp:
        results = measure_runtime(CALIBRATION_SCENARIO, Path(tmp) / "runs", "calibration")
    run_s = time.perf_counter() - t0
    cal = calibrate(results, sc)
    details["calibration"] = {**cal.to_json(), "runtime_run_s": round(run_s, 1)}
    return [
        target(t["name"], t["value"], "<=", TOLERANCE, t["unit"]) for t in calibration_targets(cal)
    ]


def _gym(details: dict[str, Any]) -> list[dict[str, Any]]:
    from edgeintel.scenario import load_scenario
    from edgeintel.sim import FixedPolicy, SimSettings
    from edgeintel.sim.gym import OffloadEnv, episode_return, train_linear_policy

    root = Path(__file__).resolve().parents[1]
    env = OffloadEnv(
        load_scenario(root / "scenarios" / "default.yaml"),
        SimSettings(devices=20, duration_s=5, task_rate_hz=5),
    )
    env.reset(seed=1)
    actions = np.random.default_rng(0).integers(0, 3, STEPS).tolist()
    episodes = 1
    c0, w0 = time.process_time(), time.perf_counter()
    for a in actions:
        _, _, done, _, _ = env.step(a)
        if done:
            env.reset()
            episodes += 1
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    # the learned policy on the calibration fleet (local fastest but energy-hungry, one edge
    # worker that saturates): trained on episodes 0-1, compared on held-out episodes
    from edgeintel.sim.calibrate import CALIBRATION_SCENARIO
    from edgeintel.sim.gym import LinearOffloadPolicy

    cal_sc = load_scenario(CALIBRATION_SCENARIO)
    assert cal_sc.settings.sim is not None
    cal_env = OffloadEnv(cal_sc, cal_sc.settings.sim.model_copy(update={"duration_s": 5.0}))
    t0 = time.perf_counter()
    pol, history = train_linear_policy(cal_env, episodes=(0, 1), iterations=6, population=12,
                                       elite=3)  # fmt: skip
    train_s = time.perf_counter() - t0
    held_out = (10, 11, 12, 13, 14)

    class _Random:
        rng = np.random.default_rng(0)

        def decide(self, _obs: object) -> int:
            return int(self.rng.integers(3))

    policies: list[tuple[str, Any]] = [
        ("learned", pol),
        ("latency_greedy", LinearOffloadPolicy()),
        *((k, FixedPolicy(k)) for k in ("local", "edge", "cloud")),
        ("random", _Random()),
    ]
    returns = {
        name: float(np.mean([episode_return(cal_env, p, s) for s in held_out]))
        for name, p in policies
    }
    details["gym"] = {
        "steps": STEPS,
        "episodes": episodes,
        "cpu_s": round(cpu, 3),
        "wall_s": round(wall, 3),
        "steps_per_wall_s": round(STEPS / wall, 1),
        "learned_policy": {
            "parameters": pol.to_vector().round(4).tolist(),
            "train_s": round(train_s, 2),
            "best_return_per_iteration": [round(h, 4) for h in history],
            "derived": {"held_out_mean_return": {k: round(v, 4) for k, v in returns.items()}},
        },
    }
    return [target("Gymnasium step() rate", STEPS / cpu, ">=", 10_000, "decisions/s CPU")]


def extra_targets(details: dict[str, Any]) -> list[dict[str, Any]]:
    """The calibration ratios and the Gymnasium step rate as targets (details added in place)."""
    return _gym(details) + _calibration(details)
