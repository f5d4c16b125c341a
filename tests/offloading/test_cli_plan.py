"""`edgeintel plan` on a tiny scenario, and its one-line errors (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from edgeintel.cli import app
from edgeintel.errors import ConfigError
from edgeintel.models.export import export_graph
from edgeintel.scenario import parse_scenario

from ..conftest import tiny_scenario_dict
from .test_split import _TwoOutputs


def _scenario(tmp_path: Path, **offloading: object) -> Path:
    raw = tiny_scenario_dict()
    raw["devices"][0]["link"] = {
        "bandwidth_mbps": 20,
        "rtt_ms": 5,
        "trace": [{"t_s": 0, "bandwidth_mbps": 20}, {"t_s": 30, "bandwidth_mbps": 0}],
    }
    raw["settings"]["offloading"] = {"profile_rounds": 1, **offloading}
    p = tmp_path / "sc.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def _plan(tmp_path: Path, sc: Path, *args: str) -> object:
    return CliRunner().invoke(
        app, ["plan", str(sc), "--runs-dir", str(tmp_path / "runs"), "--run-id", "p", *args]
    )


def test_plan_prints_a_table_and_writes_the_run(tmp_path: Path) -> None:
    sc = _scenario(tmp_path, d2d={"bandwidth_mbps": 40, "rtt_ms": 2})
    res = _plan(tmp_path, sc, "--split-after", "/0/Conv")
    assert res.exit_code == 0, res.output
    assert "Offloading plan" in res.output and "phone-3" in res.output
    data = json.loads((tmp_path / "runs" / "p" / "plan.json").read_text())
    assert len(data["devices"]) == 4
    assert set(data["baselines"]) == {"local", "edge", "cloud"}
    assert data["forced_cut"]["max_abs_diff"] < 1e-4
    assert all(e["max_abs_diff"] < 1e-4 for e in data["executed_splits"])
    # the outage at t=30 s puts every device local
    late = [r for r in data["timeline"] if r["t_s"] == 30.0]
    assert late and all(r["tier"] == "local" for r in late)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--objective", "speed"], "--objective: Input should be 'latency', 'energy' or"),
        (["--placement", "magic"], "unknown placement policy 'magic'"),
        (["--split-after", "nope"], "unknown node 'nope'"),
        (["--device-node", "/13/Gemm"], "cannot be cut there"),
        (["--deadline-ms", "0.000001"], "deadline cannot be met: phone-0 (best"),
    ],
)
def test_bad_inputs_are_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    res = _plan(tmp_path, _scenario(tmp_path), *args)
    assert res.exit_code == 2, res.output
    assert message in res.output.replace("\n", " ")
    assert "Traceback" not in res.output


def test_scenario_validates_offloading_settings() -> None:
    raw = tiny_scenario_dict()
    raw["settings"]["offloading"] = {"splitter": "magic"}
    with pytest.raises(ConfigError, match=r"settings.offloading.splitter: unknown split search"):
        parse_scenario(raw)
    raw["settings"]["offloading"] = {"d2d": {"bandwidth_mbps": 0}}
    with pytest.raises(ConfigError, match=r"settings.offloading.d2d.bandwidth_mbps"):
        parse_scenario(raw)
    raw["devices"][0]["link"] = {"bandwidth_mbps": -5}
    raw["settings"]["offloading"] = {}
    with pytest.raises(ConfigError, match=r"devices\[0\].link.bandwidth_mbps"):
        parse_scenario(raw)


def test_plan_of_a_user_two_output_model_runs_the_cut_on_real_inputs(tmp_path: Path) -> None:
    # the auxiliary output made on the device travels with the crossing tensor (issue 24)
    model = tmp_path / "two.onnx"
    export_graph(_TwoOutputs().eval(), torch.zeros(1, 3, 8, 8), model, "x", ["aux", "main"])
    res = _plan(tmp_path, _scenario(tmp_path), "--model", str(model), "--split-after", "/aux/Gemm")
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "runs" / "p" / "plan.json").read_text())
    assert "aux" in data["forced_cut"]["crossing"]
    assert data["forced_cut"]["max_abs_diff"] < 1e-5
    assert "over 8 inputs" in res.output and "standard-normal" in res.output
