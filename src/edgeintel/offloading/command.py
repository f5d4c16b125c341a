"""What ``edgeintel plan SCENARIO`` does, apart from printing: build or read the model,
plan the fleet, optionally execute a requested cut, and write ``runs/<id>/plan.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import ValidationError

from edgeintel.errors import ConfigError
from edgeintel.offloading.scenario_plan import plan_scenario
from edgeintel.offloading.settings import OffloadingSettings

if TYPE_CHECKING:
    from edgeintel.scenario import Scenario

__all__ = ["PlanOutcome", "plan_command", "with_overrides"]

_CHECK_INPUTS = 8  # inputs every executed split runs on (max |diff| over all of them)


@dataclass
class PlanOutcome:
    rows: list[dict[str, Any]]
    path: Path
    notes: list[str] = field(default_factory=list)


def with_overrides(sc: Scenario, overrides: dict[str, Any]) -> Scenario:
    """``sc`` with ``settings.offloading`` fields replaced (validated; one-line errors)."""
    over = {k: v for k, v in overrides.items() if v is not None}
    if not over:
        return sc
    raw = {**sc.settings.offloading.model_dump(exclude_unset=True), **over}
    try:
        st = OffloadingSettings.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "settings.offloading"
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"--{where.replace('_', '-')}: {msg}") from None
    return sc.model_copy(update={"settings": sc.settings.model_copy(update={"offloading": st})})


def plan_command(
    sc: Scenario,
    runs_dir: Path,
    run_id: str | None = None,
    model: Path | None = None,
    overrides: dict[str, Any] | None = None,
    split_after: str | None = None,
    device_nodes: list[str] | None = None,
    overwrite: bool = False,
) -> PlanOutcome:
    """Plan ``sc`` and write the run folder; see ``edgeintel plan --help``.

    The options, ``--model``, a saved profile file and the run folder (an earlier run
    is refused unless ``overwrite``) are checked before anything is written; a plan
    that fails removes the run folder it created.
    """
    from edgeintel.offloading.graph import load_layer_graph
    from edgeintel.offloading.profiler import ModelProfile
    from edgeintel.paths import check_run_dir, removed_on_failure

    sc = with_overrides(sc, overrides or {})
    check_run_dir(runs_dir, run_id, overwrite)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    run_dir = Path(runs_dir) / (run_id or f"{stamp}-{sc.name}-plan")
    if model is not None:
        if not model.is_file() or model.suffix != ".onnx":
            raise ConfigError(f"--model: expected an existing .onnx file, got {model}")
        load_layer_graph(model)  # not a loadable ONNX model -> one line naming the file
    if sc.settings.offloading.profile_file is not None:
        ModelProfile.load(sc.settings.offloading.profile_file)
    with removed_on_failure(run_dir):
        return _plan_into(sc, run_dir, model, split_after, device_nodes)


def _plan_into(
    sc: Scenario,
    run_dir: Path,
    model: Path | None,
    split_after: str | None,
    device_nodes: list[str] | None,
) -> PlanOutcome:
    from edgeintel.data import load_data
    from edgeintel.models import build_model, export_onnx
    from edgeintel.offloading.graph import load_layer_graph

    notes = []
    ds = load_data(sc.data, seed=sc.seed, kind=sc.task.kind)
    if model is not None:
        model_path = model
        sample = _model_inputs(load_layer_graph(model).input_shape, ds.x, sc.seed)
        if sample.shape[1:] != tuple(ds.sample_shape):
            notes.append(
                f"--model takes {sample.shape[1:]} inputs, not the scenario's "
                f"{tuple(ds.sample_shape)} samples: profiled and executed on seeded "
                "standard-normal inputs"
            )
    else:
        net = build_model(sc.task.model, ds.sample_shape, ds.num_classes, sc.task.width, sc.seed)
        art = export_onnx(net, ds.sample_shape, run_dir / "model.onnx", ds.classes)
        model_path = Path(art.path)
        sample = np.asarray(ds.x[:_CHECK_INPUTS], np.float32)
        notes.append(
            f"model: {sc.task.model} on {ds.sample_shape} inputs (untrained weights: the plan "
            "depends on compute and tensor sizes, not on the weights)"
        )
    result = plan_scenario(sc, model_path, run_dir / "offloading", sample=sample)
    notes += result.notes()
    g = result.graph
    forced = None
    if split_after is not None:
        forced = g.prefix_mask(g.index(split_after) + 1)
    elif device_nodes:
        from edgeintel.offloading.split import mask_from_nodes

        forced = mask_from_nodes(g, device_nodes)
    data = json.loads((run_dir / "offloading" / "plan.json").read_text())
    if forced is not None:
        from edgeintel.offloading.split import SplitRunner, split_diff, split_model

        sm = split_model(model_path, g, forced, run_dir / "offloading" / "forced")
        runner = SplitRunner(sm, sc.settings.offloading.int8_intermediate)
        res = runner.time(sample[:1], runs=10)
        diff = split_diff(runner, model_path, sample)
        data["forced_cut"] = {
            "device_nodes": int(forced.sum()),
            "crossing": list(sm.crossing),
            "payload_bytes": res.payload_bytes,
            "head_ms_here": res.head_ms,
            "tail_ms_here": res.tail_ms,
            "max_abs_diff": diff,
        }
        notes.append(
            f"executed cut ({int(forced.sum())}/{g.num_nodes} nodes on the device): "
            f"{res.payload_bytes} B payload, head {res.head_ms:.3g} ms + tail "
            f"{res.tail_ms:.3g} ms here, max |diff| vs unsplit {diff:.3g} over "
            f"{len(sample)} inputs"
        )
    for e in result.executed:
        notes.append(
            f"executed chosen split {e['device_nodes']}/{g.num_nodes}: max |diff| vs unsplit "
            f"{e['max_abs_diff']:.3g}, {e['payload_bytes']} B payload"
        )
    switches = sum(
        1
        for a, b in zip(
            result.timeline, result.timeline[len(result.problem.devices) :], strict=False
        )
        if a["option"] != b["option"]
    )
    if len(result.timeline) > len(result.problem.devices):
        notes.append(f"link traces: {switches} plan change(s) over the timeline")
    path = run_dir / "plan.json"
    path.write_text(json.dumps(data, indent=1, default=str))
    return PlanOutcome(result.rows, path, notes)


def _model_inputs(shape: tuple[int, ...], data: np.ndarray, seed: int) -> np.ndarray:
    """Inputs for a user's model: the scenario's samples when their shape fits, else seeded
    standard-normal ones (never zeros: a split that drops a bias would pass on zeros)."""
    if tuple(data.shape[1:]) == tuple(shape):
        return np.asarray(data[:_CHECK_INPUTS], np.float32)
    rng = np.random.default_rng(seed)
    return rng.standard_normal((_CHECK_INPUTS, *shape)).astype(np.float32)
