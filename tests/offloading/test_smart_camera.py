"""The shipped smart-camera scenario: real product photos, a CNN trained on the cameras
that beats the trivial baselines, and a plan for the checkout and shelf cameras."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeintel.cli import app
from edgeintel.examples import resolve_scenario
from edgeintel.scenario import load_scenario

MIN_TEST = 1000  # as tests/test_shipped_scenarios.py
MARGIN = 0.03
SHELF_SPEED = 0.0024  # STM32H7 class, MLPerf Tiny (scenarios/smart_camera.yaml)


def test_smart_camera_uses_real_photos_and_a_zoo_cnn() -> None:
    sc = load_scenario(resolve_scenario("smart_camera"))
    assert sc.data.dataset == "fashion_mnist" and sc.data.image_size == 28
    assert sc.task.model == "image_cnn"
    assert {d.profile.compute_speed for d in sc.expand_devices()} == {0.056, SHELF_SPEED}


@pytest.mark.slow
@pytest.mark.heavy  # ~3.5 min: the shipped hierarchical training in full (make test-heavy)
def test_smart_camera_edge_model_beats_nearest_neighbour_and_plans_the_cameras(
    tmp_path: Path,
) -> None:
    # the shipped hierarchical training (~3 CPU minutes), then export, evaluation, plan
    stages = ["data", "edge_train", "export", "evaluate", "offloading"]
    args = ["run", "smart_camera", "--runs-dir", str(tmp_path), "--run-id", "s", "-q"]
    res = CliRunner().invoke(app, args + [a for s in stages for a in ("--stage", s)])
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "s" / "results.json").read_text())
    base = r["data"]["trivial_baseline"]
    assert base["best"] == "1-nearest neighbour" and r["data"]["split"]["kind"] == "stratified"
    assert r["evaluation"]["test_samples"] >= MIN_TEST
    assert r["evaluation"]["accuracy_onnx"] >= base["value"] + MARGIN, base
    rows = {d["device"]: d for d in r["offloading"]["devices"]}
    # the checkout cameras keep the whole model (or its early exit) on the device
    assert {rows[f"cam-{i}"]["decision"] for i in range(4)} <= {"local", "exit"}
    assert {rows[f"cam-{i}"]["target"] for i in range(4)} == {"-"}
    # the microcontroller shelf cameras: sending the photo to micro-1 (8.6 ms) against the
    # model locally (~45-80 ms at the STM32H7 class's speed): the plan is never slower than
    # local and an offload goes to micro-1
    for i in range(2):
        row = rows[f"shelf-{i}"]
        assert row["latency_ms"] <= row["local_ms"], row
        if row["decision"] != "local":
            assert row["decision"] in {"d2e", "hybrid"} and row["target"] == "micro-1", row
    assert r["offloading"]["summary"]["executed split max |diff|"] <= 1e-4
    ee = r["offloading"]["early_exit"]
    assert ee["data_roles"]["threshold"] == "validation split"
    assert ee["test"]["accuracy_cascade"] >= ee["test"]["accuracy_full"] - 0.05
