"""A tiny run with the anomaly kind through training, export, evaluation, compression and
caching: every stage reports the kind's metric, its figures and its exported threshold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeintel.pipeline.core import run_pipeline
from edgeintel.scenario import parse_scenario

from ..conftest import tiny_scenario_dict


@pytest.mark.slow
def test_an_anomaly_run_speaks_auroc_everywhere(tmp_path: Path) -> None:
    raw = tiny_scenario_dict()
    raw["task"] = {"model": "mlp", "width": 16, "kind": "anomaly", "false_alarm_rate": 0.05}
    raw["settings"]["caching"] = {
        "result_cache": {"requests": 100},
        "placement": {"enabled": False},
    }
    raw["settings"]["inference"]["compress"] = {"budget": {"max_metric_drop": 0.2}}
    stages = ["data", "train", "export", "evaluate", "compress", "caching"]
    run_pipeline(parse_scenario(raw), runs_dir=tmp_path, run_id="a", stages=stages)
    res = json.loads((tmp_path / "a" / "results.json").read_text())
    assert res["status"] == "completed"
    ev = res["evaluation"]
    assert ev["metric"] == "auroc" and 0 <= ev["auroc_onnx"] <= 1 and "confusion_matrix" not in ev
    threshold = ev["options"]["threshold"]
    meta = json.loads((tmp_path / "a" / "model.json").read_text())
    assert meta["extra"]["task"] == {"kind": "anomaly", "false_alarm_rate": 0.05,
                                     "threshold": threshold}  # fmt: skip
    index = json.loads((tmp_path / "a" / "figures" / "index.json").read_text())
    titles = {f["title"] for f in index if f["section"] == "evaluation"}
    assert {"ROC curve", "Precision-recall curve", "Anomaly scores"} <= titles
    assert "Confusion matrix" not in titles
    comp = res["compression"]
    assert comp["metric"] == "auroc" and "test_auroc" in comp["baseline"]
    chosen = comp["per_profile"]["phone"]
    assert chosen["budget"]["max_metric_drop"] == 0.2 and "auroc" in chosen
    assert "auroc" in res["payoff"]["compression"]["why"]
    assert res["training"]["task"]["metric"] == "auroc"
    html = (tmp_path / "a" / "report.html").read_text()
    assert "ROC curve" in html and "auroc drop ≤ 0.2" in html
    # the redundancy filter counts the alarms it could hide: those a reused result did hide
    devs = [v for v in res["caching"]["filter"]["per_device"].values() if "inputs" in v]
    assert devs and all(0 <= v["missed_alerts"] <= v["alerts"] <= v["inputs"] for v in devs)
    assert sum(v["alerts"] for v in devs) > 0
    missed = sum(v["missed_alerts"] for v in devs)
    assert ("alerts the model raised" in html) == (missed > 0)  # the report warns of it
