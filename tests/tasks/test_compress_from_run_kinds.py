"""``edgeintel compress --from-run`` on a run of another task kind: the run's kind (with its
fitted threshold) reproduces the split, judges the candidates by its metric and reads
``--max-metric-drop`` in that metric's unit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeintel.commands.compress_target import compress_target
from edgeintel.pipeline.core import run_pipeline
from edgeintel.scenario import parse_scenario

from ..conftest import tiny_scenario_dict


@pytest.mark.slow
def test_compress_from_an_anomaly_run_speaks_auroc(tmp_path: Path) -> None:
    raw = tiny_scenario_dict()
    raw["task"] = {"model": "mlp", "width": 16, "kind": "anomaly", "false_alarm_rate": 0.05}
    run_pipeline(
        parse_scenario(raw),
        runs_dir=tmp_path,
        run_id="a",
        stages=["data", "train", "export", "evaluate"],
    )
    res = json.loads((tmp_path / "a" / "results.json").read_text())
    out = compress_target(
        tmp_path / "a", out_dir=tmp_path / "c", runs=5, space="quick", max_metric_drop=0.05
    )
    search = json.loads((out.out_dir / "search.json").read_text())
    fp32 = next(c for c in search["candidates"] if not c["recipe"]["steps"])
    # the run's own model on the run's own test split, by the run's metric
    assert fp32["test_auroc"] == pytest.approx(res["evaluation"]["auroc_onnx"], abs=1e-9)
    assert all(r.final.metric == "auroc" for r in out.results)
    phone = search["per_profile"]["phone"]
    assert phone["budget"]["max_metric_drop"] == 0.05 and "test_auroc" in phone
