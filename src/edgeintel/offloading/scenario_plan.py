"""``plan_scenario``: profile a model, place a scenario's fleet, replay its link traces, and
execute the chosen splits for real; what ``edgeintel plan`` and the ``offloading`` stage share."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeintel.offloading.adapt import AdaptivePolicy
from edgeintel.offloading.early_exit import ExitProfile
from edgeintel.offloading.graph import LayerGraph, load_layer_graph
from edgeintel.offloading.placement import FleetPlan, FleetProblem, evaluate_assignment
from edgeintel.offloading.planner import OffloadPlanner, baseline_choice, plan_rows, trace_times
from edgeintel.offloading.profiler import ModelProfile, profile_model
from edgeintel.offloading.split import SplitRunner, split_diff, split_model

if TYPE_CHECKING:
    from edgeintel.scenario import Scenario

__all__ = ["ScenarioPlan", "plan_scenario"]


@dataclass
class ScenarioPlan:
    """A fleet plan with its baselines, the re-planning timeline and the executed-split check."""

    graph: LayerGraph
    profile: ModelProfile
    problem: FleetProblem
    plan: FleetPlan
    baselines: dict[str, FleetPlan | None]
    rows: list[dict[str, Any]]
    timeline: list[dict[str, Any]] = field(default_factory=list)
    executed: list[dict[str, Any]] = field(default_factory=list)
    # with an exit profile: the same fleet planned without the exit options
    without_exit: FleetPlan | None = None

    def summary(self) -> dict[str, Any]:
        tiers: dict[str, int] = {}
        for r in self.rows:
            tiers[r["decision"]] = tiers.get(r["decision"], 0) + 1
        out: dict[str, Any] = {
            "decisions": ", ".join(f"{k} x{v}" for k, v in sorted(tiers.items())),
            "mean latency (ms)": round(float(np.mean(self.plan.latency_ms)), 3),
        }
        for k, b in self.baselines.items():
            if b is not None:
                out[f"mean latency all-{k} (ms)"] = round(float(np.mean(b.latency_ms)), 3)
        if self.without_exit is not None:
            out["mean latency without exit (ms)"] = round(
                float(np.mean(self.without_exit.latency_ms)), 3
            )
        if self.executed:
            out["executed split max |diff|"] = max(e["max_abs_diff"] for e in self.executed)
        return out

    def notes(self) -> list[str]:
        """Sentences a reader of the plan must see (an unstable profile)."""
        note = self.profile.stability_note()
        return [] if note is None else [note]

    def to_json(self) -> dict[str, Any]:
        s = self.plan
        return {
            "policy": s.policy,
            "solve_ms": round(s.solve_ms, 3),
            "objective": round(s.objective, 6),
            "utilization": s.utilization,
            "model": {
                "nodes": self.graph.num_nodes,
                "full_ms_here": round(self.profile.full_ms, 4),
                "profile_rounds": self.profile.rounds,
                "profile_spread": self.profile.spread,
                "profile_stable": self.profile.stable,
                "measured_on": self.profile.measured_on,
            },
            "notes": self.notes(),
            "devices": self.rows,
            "baselines": {
                k: None
                if b is None
                else {
                    "mean_latency_ms": round(float(np.mean(b.latency_ms)), 3),
                    "mean_energy_mj": round(float(np.mean(b.energy_j)) * 1e3, 3),
                    "utilization": b.utilization,
                }
                for k, b in self.baselines.items()
            },
            "without_exit": None
            if self.without_exit is None
            else {
                "mean_latency_ms": round(float(np.mean(self.without_exit.latency_ms)), 3),
                "mean_energy_mj": round(float(np.mean(self.without_exit.energy_j)) * 1e3, 3),
                "objective": round(self.without_exit.objective, 6),
            },
            "timeline": self.timeline,
            "executed_splits": self.executed,
            "summary": self.summary(),
        }


def plan_scenario(
    sc: Scenario,
    model_path: str | Path,
    out_dir: str | Path,
    sample: np.ndarray | None = None,
    profile: ModelProfile | None = None,
    early_exit: ExitProfile | None = None,
) -> ScenarioPlan:
    """Plan ``sc`` for the ONNX model at ``model_path``; write profile.json and plan.json.

    ``sample``: model inputs (batch axis first; the first profiles) used to profile
    and to execute the chosen splits; zeros by default. ``early_exit``: the options ``exit:*`` join
    every device's choices, and the plan without them is kept for comparison.
    """
    s = sc.settings.offloading
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    graph = load_layer_graph(model_path)
    if profile is None:
        if s.profile_file is not None:
            profile = ModelProfile.load(s.profile_file, graph)
        else:
            profile = profile_model(
                model_path,
                None if sample is None else sample[:1],
                min_rounds=s.profile_rounds,
                graph=graph,
            )
    profile.save(out / "profile.json")
    planner = OffloadPlanner(graph, profile, s, early_exit=early_exit)
    problem, plan = planner.plan(sc)
    without_exit = None if early_exit is None else OffloadPlanner(graph, profile, s).plan(sc)[1]
    baselines: dict[str, FleetPlan | None] = {}
    for kind in ("local", "edge", "cloud"):
        choice = baseline_choice(problem, sc, kind)
        baselines[kind] = (
            None if choice is None else evaluate_assignment(problem, choice, kind, strict=False)
        )
    result = ScenarioPlan(
        graph, profile, problem, plan, baselines, plan_rows(problem, plan, baselines)
    )
    result.without_exit = without_exit
    result.timeline = _timeline(planner, sc)
    result.executed = _execute(
        graph, problem, plan, model_path, out / "splits", sample, s.int8_intermediate
    )
    (out / "plan.json").write_text(json.dumps(result.to_json(), indent=1, default=str))
    return result


def _timeline(planner: OffloadPlanner, sc: Scenario) -> list[dict[str, Any]]:
    """Per device, the option an ``AdaptivePolicy`` picks at every link change of the traces."""
    policies = {d.name: AdaptivePolicy(planner.settings.hysteresis) for d in sc.expand_devices()}
    rows = []
    for t in trace_times(sc):
        for d in sc.expand_devices():
            opts = planner.options(sc, d, t)
            chosen = policies[d.name].decide(opts)
            rows.append(
                {
                    "t_s": t,
                    "device": d.name,
                    "option": chosen.label,
                    "tier": chosen.tier,
                    "latency_ms": round(chosen.base.latency_ms, 3),
                    "best_ms": round(min(o.base.latency_ms for o in opts), 3),
                }
            )
    return rows


def _execute(
    graph: LayerGraph,
    problem: FleetProblem,
    plan: FleetPlan,
    model_path: str | Path,
    out: Path,
    sample: np.ndarray | None,
    int8: bool,
) -> list[dict[str, Any]]:
    """Run each distinct chosen split (head -> payload -> tail) on every input of ``sample``
    and compare every output with the full model's."""
    xs = (
        np.zeros((1, *graph.input_shape), dtype=np.float32)
        if sample is None
        else np.asarray(sample, dtype=np.float32)
    )
    done: dict[bytes, dict[str, Any]] = {}
    for d, o in enumerate(plan.choice):
        opt = problem.options[d][o]
        if opt.tier == "exit":  # not a cut of this graph: the stage executes the exit model
            continue
        mask = opt.mask if opt.mask is not None else graph.prefix_mask(opt.device_nodes)
        key = np.packbits(mask).tobytes()
        if key in done:
            continue
        k = int(mask.sum())
        t0 = time.perf_counter()
        sm = split_model(model_path, graph, mask, out / f"cut{k}")
        runner = SplitRunner(sm, int8=int8)
        res = runner.run(xs[:1])
        done[key] = {
            "device_nodes": k,
            "crossing": list(sm.crossing),
            "payload_bytes": res.payload_bytes,
            "inputs": len(xs),
            "max_abs_diff": split_diff(runner, model_path, xs),
            "seconds": round(time.perf_counter() - t0, 3),
        }
    return list(done.values())
