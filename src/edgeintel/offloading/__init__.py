"""Offloading: where each device's inference runs (see docs/offloading.md).

Profile a model per layer (ONNX Runtime), cost latency and energy, split it
(Neurosurgeon chain search, DADS min-cut) and execute the split for real,
place a fleet (local / D2E / D2C / D2D / hybrid; MILP or greedy), and re-plan
when links change. Stands on scenario, data, models and inference only.

A lazy face (``edgeintel.lazy``): each name loads its module on first use, so that
``edgeintel.scenario`` can import ``edgeintel.offloading.settings`` without the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeintel.lazy import lazy_face

if TYPE_CHECKING:
    from edgeintel.offloading.adapt import AdaptivePolicy, Switch
    from edgeintel.offloading.costs import (
        Breakdown,
        LinkState,
        OffloadObjective,
        Power,
        breakdown,
        device_energy_j,
        erlang_c,
        mmc_wait_ms,
        objective_value,
        transfer_ms,
    )
    from edgeintel.offloading.graph import LayerGraph, load_layer_graph
    from edgeintel.offloading.options import Option
    from edgeintel.offloading.placement import (
        PLACEMENTS,
        FleetPlan,
        FleetProblem,
        Resource,
        evaluate_assignment,
        place,
    )
    from edgeintel.offloading.planner import OffloadPlanner
    from edgeintel.offloading.profiler import ModelProfile, profile_model
    from edgeintel.offloading.settings import OffloadingSettings
    from edgeintel.offloading.split import SplitRunner, mask_from_nodes, split_model
    from edgeintel.offloading.split_search import (
        SPLITTERS,
        MinCutSplitter,
        SplitContext,
        SplitDecision,
        linear_costs,
        plan_split,
        split_breakdown,
    )
    from edgeintel.offloading.transfer import deserialize_tensors, serialize_tensors

__all__ = [
    "PLACEMENTS",
    "SPLITTERS",
    "AdaptivePolicy",
    "Breakdown",
    "FleetPlan",
    "FleetProblem",
    "LayerGraph",
    "LinkState",
    "MinCutSplitter",
    "ModelProfile",
    "OffloadObjective",
    "OffloadPlanner",
    "OffloadingSettings",
    "Option",
    "Power",
    "Resource",
    "SplitContext",
    "SplitDecision",
    "SplitRunner",
    "Switch",
    "breakdown",
    "deserialize_tensors",
    "device_energy_j",
    "erlang_c",
    "evaluate_assignment",
    "linear_costs",
    "load_layer_graph",
    "mask_from_nodes",
    "mmc_wait_ms",
    "objective_value",
    "place",
    "plan_split",
    "profile_model",
    "serialize_tensors",
    "split_breakdown",
    "split_model",
    "transfer_ms",
]

__getattr__, __dir__ = lazy_face(__name__, __file__)
