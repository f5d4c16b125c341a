"""examples/wine_csv: a user's CSV and model run first time, standardised by default.

The README's claims are checked on the real files: the scenario validates, the
default run standardises the columns with the server-held statistics and the
federated model learns; with ``data.standardize: false`` the run warns, naming the
widest and narrowest columns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from edgeintel.cli import app
from edgeintel.pipeline.core import run_pipeline
from edgeintel.scenario import parse_scenario

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "wine_csv"


def _run(tmp_path: Path, **data: Any) -> dict[str, Any]:
    raw = yaml.safe_load((EXAMPLE / "scenario.yaml").read_text())
    raw["data"].update(data)
    sc = parse_scenario(raw, base_dir=EXAMPLE, source=str(EXAMPLE / "scenario.yaml"))
    console = Console(record=True, width=200)
    run = run_pipeline(
        sc, tmp_path / "runs", stages=["data", "train", "edge_train"], console=console
    )
    return {**run.results, "console": console.export_text()}


def test_example_files_and_validate() -> None:
    for name in ("README.md", "scenario.yaml", "wine.csv", "winemodel.py"):
        assert (EXAMPLE / name).is_file(), name
    res = CliRunner().invoke(app, ["validate", str(EXAMPLE / "scenario.yaml")])
    assert res.exit_code == 0, res.output
    assert "178 samples of shape [1, 13], 3 classes" in res.output


@pytest.mark.slow
def test_example_runs_standardised_and_warns_when_not(tmp_path: Path) -> None:
    on = _run(tmp_path / "on")
    std = on["data"]["standardization"]
    assert std["kind"] == "per_feature" and std["fitted_on"].startswith("server-held")
    assert "warnings" not in on["data"] and on["data"]["feature_scale"]["widest"] == "proline"
    edge = on["edge_training"]
    assert edge["summary"]["final_accuracy"] >= on["data"]["split"]["chance_accuracy"] + 0.4
    off = _run(tmp_path / "off", standardize=False)
    (message,) = off["data"]["warnings"]
    assert "'proline'" in message and "'nonflavanoid_phenols'" in message
    assert "very different scales" in off["console"]
    assert off["data"]["standardization"] is None
