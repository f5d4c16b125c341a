"""The shipped regression and anomaly scenarios run end to end (shortened training)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeintel.pipeline.core import run_pipeline
from edgeintel.scenario import load_scenario

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
STAGES = ["data", "train", "edge_train", "export", "evaluate"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "metric", "baseline"),
    [("solar_farm", "rmse", "last value"), ("pipeline_monitoring", "auroc", "always normal")],
)
def test_shipped_task_scenario_runs(name: str, metric: str, baseline: str, tmp_path: Path) -> None:
    sc = load_scenario(SCENARIOS / f"{name}.yaml")
    t = sc.settings.training.model_copy(update={"epochs": 3, "rounds": 3})
    sc = sc.model_copy(update={"settings": sc.settings.model_copy(update={"training": t})})
    res = run_pipeline(sc, tmp_path, run_id=name, stages=STAGES).results
    data = res["data"]
    assert data["test_samples"] >= 1000
    assert data["trivial_baseline"]["metric"] == metric
    assert data["trivial_baseline"]["best"] == baseline
    ev = res["evaluation"]
    assert ev["metric"] == metric and ev["test_samples"] == data["test_samples"]
    # even after 3 epochs / rounds the model beats the trivial baseline on test
    task = res["training"]["task"]
    assert task["beats_baseline"], task["summary"]
    if metric == "auroc":
        assert data["split"]["anomalies_excluded_from_training"] > 0


@pytest.mark.slow
def test_smart_home_keyword_spotting_serves_through_the_outage(tmp_path: Path) -> None:
    """The shipped keyword-spotting scenario validates and runs every stage, the deployment
    included (one epoch); commands are served during the backhaul outage, on the devices or
    the home hub, never by the cloud."""
    sc = load_scenario(SCENARIOS / "smart_home.yaml")
    st = sc.settings
    t = st.training.model_copy(update={"epochs": 1})
    # fewer timing runs, and the 150 s link trace played in 8 s instead of 15 (suite time)
    inf = st.inference.model_copy(update={"latency_runs": 10, "warmup_runs": 2})
    dep = st.runtime.deploy.model_copy(update={"duration_s": 8, "trace_time_scale": 18.75})
    rt = st.runtime.model_copy(update={"deploy": dep})
    st = st.model_copy(update={"training": t, "inference": inf, "runtime": rt})
    res = run_pipeline(
        sc.model_copy(update={"settings": st}), tmp_path, run_id="smart_home"
    ).results
    assert res["status"] == "completed", res.get("error")
    data = res["data"]
    assert data["test_samples"] >= 1000 and "SYNTHETIC" in data["description"]
    out = res["runtime"]["outage"]
    assert out["windows_trace_s"] == [[40.0, 100.0]]
    during = out["during"]
    assert during["results"] > 0 and during["accuracy"] is not None
    assert "cloud" not in during["by_placement"]  # the cloud is unreachable then
    assert res["runtime"]["undelivered"] == 0
