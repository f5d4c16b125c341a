"""The fleet simulator: discrete-event simulation of thousands of devices (docs/simulator.md).

The same policy objects as the runtime (the offloading cost model, placement
registry and ``AdaptivePolicy``; the cache replacement policies) decide; only
the clock (simulated, integer nanoseconds) and the transport (simulated links,
a shared cell uplink, server queues) differ. Two engines run the one model: a
heap-based core of ours (``engine="fast"``) and a SimPy reference
(``engine="simpy"``) that gives identical per-task records.

A lazy face (``edgeintel.lazy``): each name loads its module on first use, so that
``edgeintel.scenario`` can import ``edgeintel.sim.settings`` without the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeintel.lazy import lazy_face

if TYPE_CHECKING:
    from edgeintel.sim.api import Simulation, simulate
    from edgeintel.sim.calibrate import Calibration, calibration_targets
    from edgeintel.sim.gym import LinearOffloadPolicy, OffloadEnv, train_linear_policy
    from edgeintel.sim.model import SLOTS, SimModel, build_model, memory_estimate_bytes
    from edgeintel.sim.policy import (
        ACTIONS,
        FEATURES,
        DecisionPolicy,
        FixedPolicy,
        Observation,
        PlannerPolicy,
    )
    from edgeintel.sim.result import SimResult
    from edgeintel.sim.settings import (
        FederatedSimSettings,
        MobilitySettings,
        SimSettings,
        TraceSettings,
    )
    from edgeintel.sim.state import SimState
    from edgeintel.sim.sweep import Grid, SweepTable, load_grid, run_parallel
    from edgeintel.sim.traces import DeviceTraces, sample_traces

__all__ = [
    "ACTIONS",
    "FEATURES",
    "SLOTS",
    "Calibration",
    "DecisionPolicy",
    "DeviceTraces",
    "FederatedSimSettings",
    "FixedPolicy",
    "Grid",
    "LinearOffloadPolicy",
    "MobilitySettings",
    "Observation",
    "OffloadEnv",
    "PlannerPolicy",
    "SimModel",
    "SimResult",
    "SimSettings",
    "SimState",
    "Simulation",
    "SweepTable",
    "TraceSettings",
    "build_model",
    "calibration_targets",
    "load_grid",
    "memory_estimate_bytes",
    "run_parallel",
    "sample_traces",
    "simulate",
    "train_linear_policy",
]

__getattr__, __dir__ = lazy_face(__name__, __file__)
