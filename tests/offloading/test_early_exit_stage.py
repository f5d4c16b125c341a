"""Early exit in the scenario: settings, the validation-only exit-point rule, the stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from rich.console import Console

from edgeintel.data.provenance import CENTRAL_TRAIN, SERVER_SET
from edgeintel.errors import ConfigError
from edgeintel.models import build_model
from edgeintel.models.early_exit import ExitRule
from edgeintel.offloading import early_exit as ee_mod
from edgeintel.offloading.early_exit import (
    ExitCalibration,
    check_exit_blocks,
    choose_exit_point,
    default_candidates,
    select_exit_point,
)
from edgeintel.pipeline.core import run_pipeline
from edgeintel.pipeline.preflight import preflight
from edgeintel.scenario import parse_scenario

from ..conftest import tiny_scenario_dict

STAGES = ["data", "train", "export", "offloading"]


def _scenario(
    early_exit: dict[str, Any], training: dict[str, Any] | None = None, **data: Any
) -> Any:
    raw = tiny_scenario_dict()
    raw["data"].update({"validation_fraction": 0.2, **data})
    raw["settings"]["training"].update(training or {})
    raw["settings"]["offloading"] = {"early_exit": early_exit, "profile_rounds": 1}
    return parse_scenario(raw)


def _cal(rate: float, met: bool = True) -> ExitCalibration:
    return ExitCalibration(ExitRule(), rate, 0.9, 0.9, 0.9, 0.9, met, 40)


def _from_json(v: dict[str, Any]) -> ExitCalibration:
    rule = ExitRule(v["rule"]["kind"], v["rule"]["threshold"])
    keys = ("exit_rate", "accuracy", "full_accuracy", "exit_accuracy", "target_accuracy")
    return ExitCalibration(rule, *(v[k] for k in keys), v["met"], v["samples"])


# ------------------------------------------------------------------ settings


@pytest.mark.parametrize(
    "bad",
    [
        {"confidence": "margin"},
        {"after_block": 0},
        {"target_accuracy": 1.5},
        {"max_accuracy_drop": -0.1},
        {"candidate_blocks": [0, 3]},
        {"after": 3},  # unknown key
    ],
)
def test_settings_reject_bad_values(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"settings\.offloading\.early_exit") as err:
        _scenario(bad)
    assert "\n" not in str(err.value)


def test_block_the_model_lacks_is_one_line_from_validate() -> None:
    with pytest.raises(ConfigError) as err:
        preflight(_scenario({"after_block": 99}))
    msg = str(err.value)
    assert msg.startswith("settings.offloading.early_exit.after_block: ")
    assert "got 99" in msg and "\n" not in msg


def test_family_without_exit_support_and_candidate_range() -> None:
    class GoogLeNet(torch.nn.Module):  # stands in for torchvision's (5 s to build)
        pass

    with pytest.raises(ConfigError, match=r"^settings\.offloading\.early_exit: .*GoogLeNet"):
        check_exit_blocks(GoogLeNet(), None, [])
    r = build_model("resnet18", (3, 96, 96), 3, 8, 0)  # stem, 4 layers, classifier: 6 stages
    assert check_exit_blocks(r, None, []) == default_candidates(6) == [2, 3, 4]
    assert check_exit_blocks(r, 5, []) == [5]
    with pytest.raises(ConfigError, match=r"candidate_blocks: .*1\.\.5.*got 6"):
        check_exit_blocks(r, None, [2, 6])


# ------------------------------------------------------------------ the exit-point rule


def test_rule_takes_highest_validation_exit_rate_ties_to_later_block() -> None:
    cals = {3: _cal(0.5), 6: _cal(0.8), 9: _cal(0.8), 12: _cal(0.95, met=False)}
    assert select_exit_point(cals) == 9
    assert select_exit_point({3: _cal(0.7), 9: _cal(0.6)}) == 3
    assert select_exit_point({3: _cal(0.0), 6: _cal(0.4, met=False)}) is None


def test_choose_exit_point_sees_only_fit_and_validation(tmp_path: Path) -> None:
    """The signature has no test split; the choice follows the rule on what it is given,
    and changing data it is not given cannot change it."""
    rng = np.random.default_rng(0)
    model = build_model("image_cnn", (1, 8, 8), 3, 4, 0)
    x = rng.normal(size=(90, 1, 8, 8)).astype(np.float32)
    y = (x[:, 0, :4].mean(axis=(1, 2)) > 0).astype(np.int64) + (x[:, 0, 4:].mean((1, 2)) > 0)
    fit, val = (x[:60], y[:60]), (x[60:], y[60:])
    c = choose_exit_point(model, (1, 8, 8), 3, [2, 4, 6], fit, val, epochs=3)
    cals = {int(k): _from_json(v) for k, v in c.candidates.items()}
    expected = select_exit_point(cals)
    assert c.after == (expected if expected is not None else 6)
    assert all(v["samples"] == 30 for v in c.candidates.values())  # validation rows only
    one = choose_exit_point(model, (1, 8, 8), 3, [4], fit, val, epochs=3)
    assert one.after == 4 and one.chosen_by == "given (one candidate)"


# ------------------------------------------------------------------ the stage


def _rows(x: np.ndarray) -> set[bytes]:
    return {r.tobytes() for r in np.ascontiguousarray(x, dtype=np.float32)}


def _spy_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sc: Any, stages: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    seen: dict[str, Any] = {}
    real = ee_mod.choose_exit_point

    def spy(model: Any, shape: Any, k: int, blocks: Any, fit: Any, val: Any, *a: Any, **kw: Any):
        seen.update(fit=np.asarray(fit[0]), val=np.asarray(val[0]), blocks=list(blocks))
        return real(model, shape, k, blocks, fit, val, *a, **kw)

    monkeypatch.setattr(ee_mod, "choose_exit_point", spy)
    from edgeintel.pipeline.stages import offloading_stage as stage

    real_run = stage.OffloadingStage.run

    def keep(self: Any, ctx: Any) -> None:
        seen["ctx"] = ctx
        real_run(self, ctx)

    monkeypatch.setattr(stage.OffloadingStage, "run", keep)
    res = run_pipeline(sc, tmp_path / "runs", "r", console=Console(quiet=True), stages=stages)
    return res.results, seen


def test_stage_records_exit_results_roles_and_never_shows_test(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results, seen = _spy_run(tmp_path, monkeypatch, _scenario({"epochs": 5}), STAGES)
    ee = results["offloading"]["early_exit"]
    assert ee["data_roles"]["exit_head_fit"] == CENTRAL_TRAIN
    assert ee["data_roles"]["exit_point"] == ee["data_roles"]["threshold"] == "validation split"
    assert ee["data_roles"]["reported"] == "test split"
    assert ee["after_block"] in seen["blocks"] and len(seen["blocks"]) == 3
    assert str(ee["after_block"]) in ee["candidates_validation"]
    assert 0.0 <= ee["test"]["exit_rate"] <= 1.0 and ee["test"]["samples"] > 0
    assert ee["fused_graph_agrees"] and ee["fused_graph_max_abs_diff"] < 1e-4
    assert set(ee["plan"]) == {
        "mean_latency_ms_with_exit",
        "mean_latency_ms_without_exit",
        "devices_choosing_exit",
    }
    assert ee["plan"]["mean_latency_ms_with_exit"] <= ee["plan"]["mean_latency_ms_without_exit"]
    assert results["offloading"]["without_exit"] is not None
    ctx = seen["ctx"]
    assert ctx.offloading_plan is not None
    problem = ctx.offloading_plan.problem
    for opts in problem.options:  # every device may choose the exit, locally or offloaded
        labels = {o.label for o in opts}
        assert "exit:local" in labels and "exit:micro-1" in labels
    ds = ctx.dataset
    test_rows = _rows(ds.x[ctx.test_idx])
    assert _rows(seen["val"]) == _rows(ds.x[ctx.val_idx])
    assert not _rows(seen["val"]) & test_rows and not _rows(seen["fit"]) & test_rows
    assert _rows(seen["fit"]) <= _rows(ds.x[ctx.train_idx])


@pytest.mark.parametrize("server_fraction", [0.0, 0.15])
def test_edge_trained_model_fits_exit_on_server_set_or_skips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server_fraction: float
) -> None:
    training = {"mode": "federated", "rounds": 2, "local_steps": 2}
    sc = _scenario({"epochs": 3}, training, server_fraction=server_fraction)
    stages = ["data", "edge_train", "export", "offloading"]
    results, seen = _spy_run(tmp_path, monkeypatch, sc, stages)
    ee = results["offloading"]["early_exit"]
    ctx = seen["ctx"]
    if server_fraction == 0.0:
        assert "skipped" in ee and ee["data_roles"]["exit_head_fit"] == "none"
        assert "fit" not in seen and results["offloading"]["without_exit"] is None
        return
    assert ee["data_roles"]["exit_head_fit"] == SERVER_SET
    device_rows = set().union(*(_rows(ctx.dataset.x[p]) for p in ctx.device_parts))
    assert _rows(seen["fit"]) == _rows(ctx.dataset.x[ctx.server_idx])
    assert not _rows(seen["fit"]) & device_rows
