"""`edgeintel run` end to end on a tiny scenario: results.json fields and report.html."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from edgeintel.cli import app

from .conftest import tiny_scenario_dict


def test_run_writes_results_and_report(tiny_scenario_file: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    res = CliRunner().invoke(
        app, ["run", str(tiny_scenario_file), "--runs-dir", str(runs), "--run-id", "t1", "-q"]
    )
    assert res.exit_code == 0, res.output
    out = runs / "t1"
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "completed" and results["error"] is None
    for key in (
        "run_id",
        "created",
        "scenario",
        "machine",
        "versions",
        "stages",
        "timings_s",
        "data",
        "training",
        "model",
        "evaluation",
    ):
        assert key in results, key
    core = ["data", "train", "export", "evaluate"]
    assert [s for s in results["stages"] if s in core] == core
    data = results["data"]
    # 100 test; 15% of the other 300 is the validation split, kept off the devices
    assert sum(data["partition"]["samples_per_device"]) == data["train_samples"]
    assert data["train_samples"] + data["split"]["validation"] == 300
    assert data["test_samples"] == 100 and data["partition"]["devices"] == 4
    assert data["split"]["kind"] == "stratified" and data["split"]["server"] == 0
    assert len(results["training"]["history"]) == 2
    ev = results["evaluation"]
    assert ev["onnx_max_abs_diff"] < 1e-3
    assert abs(ev["accuracy_onnx"] - ev["accuracy_torch"]) < 0.02
    lat = ev["latency_ms"]  # windows of 5 timed runs, pooled over the last 3 that agree
    assert lat["p50_ms"] > 0 and lat["runs"] == 15 and lat["windows"] >= 3
    # a 4x slower phone takes 4x as long
    assert abs(ev["per_profile"]["phone"]["p50_ms"] - 4 * ev["latency_ms"]["p50_ms"]) < 1e-3
    assert (out / "model.onnx").stat().st_size == results["model"]["onnx"]["bytes"]
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 2 and "completed" in html
    assert "results:" in res.output and "report:" in res.output


def test_run_failure_keeps_partial_results(tmp_path: Path) -> None:
    """A model whose training loss turns NaN fails the train stage; the data section stays."""
    (tmp_path / "nan_model.py").write_text(
        "import torch\n"
        "class M(torch.nn.Module):\n"
        "    def __init__(self, n, k):\n"
        "        super().__init__()\n"
        "        self.lin = torch.nn.Linear(n, k)\n"
        "    def forward(self, x):\n"
        "        y = self.lin(x.flatten(1))\n"
        "        return y * float('nan') if self.training else y\n"
        "def build(input_shape, num_classes):\n"
        "    return M(64, num_classes)\n"
    )
    raw = tiny_scenario_dict()
    raw["task"] = {"model": "nan_model:build"}
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(raw))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgeintel.cli",
            "run",
            str(f),
            "--runs-dir",
            str(tmp_path / "runs"),
            "--run-id",
            "bad",
            "-q",
            "--stage",
            "data",
            "--stage",
            "train",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "training diverged at epoch 1: the loss is nan" in proc.stderr
    assert "Traceback" not in proc.stderr
    results = json.loads((tmp_path / "runs" / "bad" / "results.json").read_text())
    assert results["status"] == "failed" and "stage train" in results["error"]
    assert results["data"]["samples"] == 400 and "training" not in results
    assert (tmp_path / "runs" / "bad" / "report.html").exists()


def test_bad_input_fails_before_a_run_folder_is_made(tmp_path: Path) -> None:
    raw = tiny_scenario_dict()
    raw["data"]["partition"] = {"kind": "natural"}  # digits has no subject ids
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(raw))
    res = CliRunner().invoke(app, ["run", str(f), "--runs-dir", str(tmp_path / "runs"), "-q"])
    assert res.exit_code == 2
    assert "needs subject or recording ids" in res.output
    assert not (tmp_path / "runs").exists()


def test_help_reads_well() -> None:
    res = CliRunner().invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in ("run", "validate", "datasets"):
        assert cmd in res.output
    assert "``" not in res.output


def test_help_paragraphs_are_reflowed_in_the_command_list() -> None:
    """Rich markup mode keeps a docstring's source line breaks in the command list (they
    broke `validate`'s line after "labels,"): every command's help is reflowed first."""
    import click
    import typer.main

    from edgeintel.cli.common import _tidy

    assert _tidy("a\n  b\n\n- x\n- y\n\nc ``z``") == "a b\n\n- x\n- y\n\nc `z`"
    group = typer.main.get_command(app)
    group.main(["--help"], standalone_mode=False)

    def helps(cmd: click.Command) -> list[str]:
        subs = getattr(cmd, "commands", {}).values()
        return [cmd.help or ""] + [h for sub in subs for h in helps(sub)]

    for text in helps(group):
        assert "``" not in text
        for para in text.split("\n\n"):
            assert "\n" not in para or para.lstrip().startswith(("- ", "* ")), para


def test_run_with_user_data_file_and_model_factory(tmp_path: Path) -> None:
    """A user's CSV and model factory, next to the scenario, replace the bundled ones."""
    import numpy as np
    import pandas as pd
    from sklearn.datasets import load_digits

    d = load_digits()
    df = pd.DataFrame(d.data[:500] / 16.0, columns=[f"px{i}" for i in range(64)])
    df["digit"] = d.target[:500]
    project = tmp_path / "project"
    project.mkdir()
    df.to_csv(project / "readings.csv", index=False)
    (project / "my_models.py").write_text(
        "import torch\n"
        "def small(input_shape, num_classes):\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32),\n"
        "                               torch.nn.ReLU(), torch.nn.Linear(32, num_classes))\n"
    )
    raw = tiny_scenario_dict()
    raw["task"] = {"model": "my_models:small"}
    raw["data"] = {
        "path": "readings.csv",
        "label_column": "digit",
        "shape": [1, 8, 8],
        "partition": {"kind": "iid"},
    }
    raw["settings"]["training"]["epochs"] = 15
    (project / "s.yaml").write_text(yaml.safe_dump(raw))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgeintel.cli",
            "run",
            str(project / "s.yaml"),
            "--runs-dir",
            str(tmp_path / "runs"),
            "--run-id",
            "user",
            "-q",
            "--stage",
            "data",
            "--stage",
            "train",
            "--stage",
            "export",
            "--stage",
            "evaluate",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads((tmp_path / "runs" / "user" / "results.json").read_text())
    assert results["data"]["name"] == "readings" and results["data"]["samples"] == 500
    # the factory beside the scenario is pinned to its file and imported by that path
    assert results["model"]["family"] == f"{(project / 'my_models.py').resolve()}:small"
    assert results["model"]["params"] == 64 * 32 + 32 + 32 * 10 + 10
    assert results["evaluation"]["accuracy_onnx"] > 0.8
    assert np.isclose(
        results["evaluation"]["accuracy_onnx"], results["evaluation"]["accuracy_torch"], atol=0.01
    )


def test_datasets_names_the_source_of_every_bundled_dataset() -> None:
    """`edgeintel datasets` lists every registered dataset with the package it ships in."""
    from edgeintel.data import DATASETS

    res = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["datasets"])
    assert res.exit_code == 0, res.output
    for name in DATASETS:
        line = next(row for row in res.output.splitlines() if f" {name} " in row)
        assert "registered by a plugin" not in line, line
