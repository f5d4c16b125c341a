"""`edgeintel run` answers at once, and the run takes over what preflight computed.

The header is the first line (printed before the components are imported and before
preflight), preflight says what it is doing, and the run reuses preflight's data stage
and untrained model: the results are those of a run that computed them itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from edgeintel.pipeline import preflight, run_pipeline
from edgeintel.pipeline.stages.basic_stages import DataStage
from edgeintel.scenario import parse_scenario

from .conftest import tiny_scenario_dict


def _no_data_stage(self: DataStage, ctx: Any) -> None:
    raise AssertionError("the data stage ran again although preflight prepared it")


@pytest.mark.parametrize(
    ("training", "stages", "section"),
    [
        ({}, ["data", "train"], "training"),
        ({"mode": "federated", "rounds": 1, "epochs": 1}, ["data", "edge_train"], "edge_training"),
    ],
    ids=["central", "federated"],
)
def test_run_on_prepared_equals_run_from_scratch(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    training: dict[str, Any],
    stages: list[str],
    section: str,
) -> None:
    raw = tiny_scenario_dict()
    raw["settings"]["training"].update(training)
    sc = parse_scenario(raw)
    quiet = Console(quiet=True)
    scratch = run_pipeline(sc, tmp_path, "scratch", quiet, stages=stages)
    checked = preflight(sc, stages)
    assert checked.prepared is not None and checked.prepared.model is not None
    monkeypatch.setattr(DataStage, "run", _no_data_stage)
    reused = run_pipeline(sc, tmp_path, "reused", quiet, stages=stages, prepared=checked.prepared)
    a, b = scratch.results, reused.results
    assert a["status"] == b["status"] == "completed"
    assert a["stages"] == b["stages"]
    assert json.dumps(a["data"], sort_keys=True) == json.dumps(b["data"], sort_keys=True)
    assert a[section]["history"] and a[section]["history"] == b[section]["history"]
    log = (reused.run_dir / "run.log").read_text()
    assert "stage data taken over from preflight" in log
    # the prepared model was handed out once: the next build is a fresh one
    assert checked.prepared.data.initial_model is None


def test_prepared_for_another_scenario_is_not_taken(tmp_path: Path) -> None:
    sc = parse_scenario(tiny_scenario_dict())
    other = parse_scenario(tiny_scenario_dict(seed=1))
    checked = preflight(other, ["data"])
    res = run_pipeline(
        sc, tmp_path, "r", Console(quiet=True), stages=["data"], prepared=checked.prepared
    )
    assert "taken over" not in (res.run_dir / "run.log").read_text()
    assert res.results["scenario"]["seed"] == 0


def test_header_is_the_first_line_then_preflight_steps(tmp_path: Path) -> None:
    f = tmp_path / "tiny.yaml"
    f.write_text(yaml.safe_dump(tiny_scenario_dict()))
    cmd = [sys.executable, "-m", "edgeintel", "run", str(f), "--runs-dir", str(tmp_path)]
    cmd += ["--run-id", "h", "--stage", "data", "--stage", "train"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True).stdout
    lines = out.splitlines()
    assert lines[0].startswith("edgeintel run ") and "4 devices" in lines[0]
    assert lines[1].startswith("preflight: ")
    assert any(line.startswith("preflight: loading digits") for line in lines)
