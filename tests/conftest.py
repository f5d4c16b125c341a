"""Shared fixtures: repository paths and a tiny scenario factory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"


def run_deployed(tmp_path: Path, scenario: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """Run ``scenario`` (a mapping) through data, train, export and runtime with the CLI;
    return the run folder and its ``results.json``'s ``runtime`` section."""
    import json

    from typer.testing import CliRunner

    from edgeintel.cli import app

    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(scenario))
    runs = tmp_path / "runs"
    args = ["run", str(f), "--runs-dir", str(runs), "--run-id", "r", "-q"]
    for stage in ("data", "train", "export", "runtime"):
        args += ["--stage", stage]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    return runs / "r", json.loads((runs / "r" / "results.json").read_text())["runtime"]


def tiny_scenario_dict(**overrides: Any) -> dict[str, Any]:
    """A small valid scenario mapping (digits, 4 devices, 1 micro BS) for fast tests."""
    sc: dict[str, Any] = {
        "name": "tiny",
        "seed": 0,
        "task": {"model": "image_cnn", "width": 4},
        "data": {
            "dataset": "digits",
            "max_samples": 400,
            "test_fraction": 0.25,
            "partition": {"kind": "dirichlet", "alpha": 1.0},
        },
        "edge_servers": [{"name": "micro-1", "kind": "micro"}],
        "device_profiles": {
            "phone": {
                "compute_speed": 0.25,
                "memory_mb": 2048,
                "power_compute_w": 2.0,
                "power_tx_w": 1.0,
                "power_idle_w": 0.1,
                "battery_j": 10000,
            }
        },
        "devices": [{"name": "phone", "count": 4, "profile": "phone", "attach": "micro-1"}],
        "links": [{"between": ["micro-1", "cloud"], "bandwidth_mbps": 100, "rtt_ms": 20}],
        "settings": {
            "training": {"epochs": 2, "batch_size": 32},
            "inference": {"latency_runs": 5, "warmup_runs": 1},
        },
    }
    sc.update(overrides)
    return sc


@pytest.fixture
def tiny_scenario_file(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump(tiny_scenario_dict()))
    return p
