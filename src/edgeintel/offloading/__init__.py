"""Offloading: where each device's inference runs (see docs/offloading.md).

Profile a model per layer (ONNX Runtime), cost latency and energy, split it
(Neurosurgeon chain search, DADS min-cut) and execute the split for real,
place a fleet (local / D2E / D2C / D2D / hybrid; MILP or greedy), and re-plan
when links change. Stands on scenario, data, models and inference only.

Names load lazily so that ``edgeintel.scenario`` can import
``edgeintel.offloading.settings`` without pulling in ONNX Runtime.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AdaptivePolicy": "adapt",
    "Switch": "adapt",
    "Breakdown": "costs",
    "LinkState": "costs",
    "OffloadObjective": "costs",
    "Power": "costs",
    "breakdown": "costs",
    "device_energy_j": "costs",
    "erlang_c": "costs",
    "mmc_wait_ms": "costs",
    "objective_value": "costs",
    "transfer_ms": "costs",
    "LayerGraph": "graph",
    "load_layer_graph": "graph",
    "SPLITTERS": "split_search",
    "MinCutSplitter": "split_search",
    "SplitContext": "split_search",
    "SplitDecision": "split_search",
    "linear_costs": "split_search",
    "plan_split": "split_search",
    "split_breakdown": "split_search",
    "PLACEMENTS": "placement",
    "FleetPlan": "placement",
    "FleetProblem": "placement",
    "Option": "placement",
    "Resource": "placement",
    "evaluate_assignment": "placement",
    "place": "placement",
    "OffloadPlanner": "planner",
    "ModelProfile": "profiler",
    "profile_model": "profiler",
    "OffloadingSettings": "settings",
    "SplitRunner": "split",
    "mask_from_nodes": "split",
    "split_model": "split",
    "deserialize_tensors": "transfer",
    "serialize_tensors": "transfer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'edgeintel.offloading' has no attribute {name!r}")
    return getattr(importlib.import_module(f"edgeintel.offloading.{module}"), name)
