"""`edgeintel device` streams exactly the inputs `edgeintel run` derived for that device.

A standardised scenario (wearable_health: smartwatch IMU channels on different
scales, standardised per channel) is run through its data, training and export
stages; then a real agent process is started on one of its watches with the run's
model. The agent reports the sha256 of the inputs it fed its model; it must equal
the digest of the run's inputs for that device, bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from edgeintel.examples import example_path
from edgeintel.pipeline.core import run_pipeline
from edgeintel.pipeline.stages.basic_stages import DataStage
from edgeintel.scenario import parse_scenario

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("seglearn", reason="wearable_health's data (watch_exercises) ships in seglearn")


def _digest(x: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(x, dtype=np.float32).tobytes()).hexdigest()


def _agent_process(
    scenario: Path, device: str, onnx: Path, store: Path
) -> subprocess.CompletedProcess[str]:
    args = [
        sys.executable, "-m", "edgeintel", "device", str(scenario),
        "--device", device, "--onnx", str(onnx), "--store", str(store),
        "--limit", "4", "--rate-hz", "200", "--drain-timeout-s", "0",
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)


def _agent(scenario: Path, device: str, onnx: Path, store: Path) -> dict[str, Any]:
    done = _agent_process(scenario, device, onnx, store)
    assert done.returncode == 0, done.stdout + done.stderr
    start = done.stdout.index("{")
    return json.loads(done.stdout[start:])  # type: ignore[no-any-return]


@pytest.mark.slow
def test_agent_inputs_equal_the_runs_inputs(tmp_path: Path, monkeypatch: Any) -> None:
    raw = yaml.safe_load(example_path("wearable_health").read_text())
    raw["devices"][0]["count"] = 3  # shrunk: three watches, one epoch
    raw["settings"] = {"training": {"epochs": 1, "batch_size": 8}}
    scenario = tmp_path / "wearable.yaml"
    scenario.write_text(yaml.safe_dump(raw))
    seen: dict[str, Any] = {}
    real = DataStage.run

    def keep_ctx(self: DataStage, ctx: Any) -> None:
        real(self, ctx)
        seen["ctx"] = ctx

    monkeypatch.setattr(DataStage, "run", keep_ctx)
    sc = parse_scenario(raw, base_dir=tmp_path, source=str(scenario))
    run = run_pipeline(sc, tmp_path / "runs", stages=["data", "train", "export"])
    assert run.results["data"]["standardization"]["kind"] == "per_channel"
    ctx = seen["ctx"]
    names = [d.name for d in ctx.devices]
    device = names[1]
    x_run, _ = ctx.device_inputs(1)  # the shard as the device streams it
    out = _agent(scenario, device, run.run_dir / "model.onnx", tmp_path / "watch.db")
    assert out["inputs"] == len(x_run) and out["produced"] == 4
    assert out["inputs_sha256"] == _digest(x_run)
    # the check has teeth: the raw (unstandardised) windows would give another digest
    from edgeintel.data import load_data

    x_raw = load_data(sc.data, seed=sc.seed).x[ctx.device_parts[1]]
    assert _digest(x_raw) != _digest(x_run)
    # a scenario that derives other preprocessing than the model recorded is refused
    raw["data"]["standardize"] = False
    unscaled = tmp_path / "unscaled.yaml"
    unscaled.write_text(yaml.safe_dump(raw))
    done = _agent_process(unscaled, device, run.run_dir / "model.onnx", tmp_path / "w2.db")
    assert done.returncode == 2, done.stdout + done.stderr
    said = (done.stdout + done.stderr).strip()
    assert "trained on inputs preprocessed with per_channel standardisation" in said
    assert "Traceback" not in said and len(said.splitlines()) <= 2, said
