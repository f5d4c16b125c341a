"""The fleet simulator: discrete-event simulation of thousands of devices (docs/simulator.md).

The same policy objects as the runtime (the offloading cost model, placement
registry and ``AdaptivePolicy``; the cache replacement policies) decide; only
the clock (simulated, integer nanoseconds) and the transport (simulated links,
a shared cell uplink, server queues) differ. Two engines run the one model: a
heap-based core of ours (``engine="fast"``) and a SimPy reference
(``engine="simpy"``) that gives identical per-task records.

Names load lazily so that ``edgeintel.scenario`` can import
``edgeintel.sim.settings`` without pulling in the engines.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SimSettings": "settings",
    "TraceSettings": "settings",
    "MobilitySettings": "settings",
    "FederatedSimSettings": "settings",
    "DeviceTraces": "traces",
    "sample_traces": "traces",
    "SimModel": "model",
    "build_model": "model",
    "memory_estimate_bytes": "model",
    "SLOTS": "model",
    "SimState": "state",
    "FEATURES": "policy",
    "Observation": "policy",
    "DecisionPolicy": "policy",
    "PlannerPolicy": "policy",
    "FixedPolicy": "policy",
    "ACTIONS": "policy",
    "Simulation": "api",
    "simulate": "api",
    "SimResult": "result",
    # sweeps, calibration by the runtime, the Gymnasium environment (the simsweep branch)
    "Grid": "sweep",
    "SweepTable": "sweep",
    "load_grid": "sweep",
    "run_parallel": "sweep",
    "Calibration": "calibrate",
    "calibration_targets": "calibrate",
    "OffloadEnv": "gym",
    "LinearOffloadPolicy": "gym",
    "train_linear_policy": "gym",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'edgeintel.sim' has no attribute {name!r}")
    return getattr(importlib.import_module(f"edgeintel.sim.{module}"), name)
