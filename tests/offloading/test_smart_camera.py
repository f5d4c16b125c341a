"""The shipped smart-camera scenario: a realistic model that trains, and a non-trivial plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeintel.cli import app
from edgeintel.examples import resolve_scenario
from edgeintel.scenario import load_scenario


def test_smart_camera_uses_a_realistic_model_on_96px_frames() -> None:
    sc = load_scenario(resolve_scenario("smart_camera"))
    assert sc.task.model in {"mobilenet_v3_small", "resnet18", "googlenet"}
    assert sc.data.image_size >= 96


@pytest.mark.slow
def test_smart_camera_trains_above_chance_and_splits_the_doorbells(tmp_path: Path) -> None:
    # central training only (~15 CPU s): the federated stage is exercised by `edgeintel run`
    stages = ["data", "train", "export", "evaluate", "offloading"]
    args = ["run", "smart_camera", "--runs-dir", str(tmp_path), "--run-id", "s", "-q"]
    res = CliRunner().invoke(app, args + [a for s in stages for a in ("--stage", s)])
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "s" / "results.json").read_text())
    chance = r["data"]["split"]["chance_accuracy"]
    assert r["evaluation"]["accuracy_onnx"] >= chance + 0.3
    rows = {d["device"]: d for d in r["offloading"]["devices"]}
    # the cameras stay on the device: the whole model, or its early exit (the rest local)
    assert {rows[f"cam-{i}"]["decision"] for i in range(4)} <= {"local", "exit"}
    assert {rows[f"cam-{i}"]["target"] for i in range(4)} == {"-"}
    assert {rows[f"door-{i}"]["decision"] for i in range(2)} == {"hybrid"}
    assert all(rows[f"door-{i}"]["latency_ms"] < rows[f"door-{i}"]["local_ms"] for i in range(2))
    assert r["offloading"]["summary"]["executed split max |diff|"] <= 1e-4
    ee = r["offloading"]["early_exit"]
    assert ee["data_roles"]["threshold"] == "validation split"
    assert ee["test"]["accuracy_cascade"] >= ee["test"]["accuracy_full"] - 0.05
