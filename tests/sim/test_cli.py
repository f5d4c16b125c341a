"""``edgeintel simulate``: a run folder in a run's format, a report section with plots."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from edgeintel.cli import app
from edgeintel.report.html import render_report

from ..conftest import tiny_scenario_dict


def test_simulate_writes_results_report_and_figures(tmp_path: Path) -> None:
    s = tmp_path / "s.yaml"
    s.write_text(yaml.safe_dump(tiny_scenario_dict()))
    out = tmp_path / "simrun"
    res = CliRunner().invoke(
        app,
        [
            "simulate",
            str(s),
            "--devices",
            "40",
            "--duration",
            "30",
            "--seed",
            "3",
            "--out",
            str(out),
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "40 devices x 30 s" in res.output
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "completed" and results["stages"] == ["simulate"]
    sim = results["simulation"]
    assert sim["seed"] == 3 and sim["settings"]["devices"] == 40
    summ = sim["summary"]
    assert summ["tasks"] > 0 and summ["latency_p50_s"] > 0 and summ["events"] > summ["tasks"]
    for key in ("latency_p95_s_edge", "bytes_device_to_edge", "energy_j", "cache_hits", "cpu_s"):
        assert key in summ
    assert len(sim["series"]["t_s"]) == 60 and len(sim["series"]["latency"]["p50_s"]) == 60
    index = json.loads((out / "figures" / "index.json").read_text())
    assert [f["section"] for f in index] == ["simulation"] * 3
    html = (out / "report.html").read_text()
    assert "Fleet simulation" in html and "Latency percentiles over time" in html
    # the scenario's own workload: its model measured here; no run, so a generic skip rate
    work = sim["workload"]
    assert work["task_ms"]["source"].startswith("measured from image_cnn")
    assert work["input_bytes"]["value"] % 64 == 0  # digits: float32 images
    assert "generic" in work["skip_probability"]["source"]
    assert sim["settings"]["task_ms"] == work["task_ms"]["value"] != 20.0
    # the same seed and workload again: the same records
    raw = tiny_scenario_dict()
    raw["settings"]["sim"] = {
        k: work[k]["value"] for k in ("task_ms", "input_bytes", "result_bytes")
    }
    s.write_text(yaml.safe_dump(raw))
    out1 = tmp_path / "once"
    out2 = tmp_path / "again"
    for o in (out1, out2):
        CliRunner().invoke(
            app,
            ["simulate", str(s), "--devices", "40", "--duration", "30", "--seed", "3", "--out",
             str(o), "-q"],
        )  # fmt: skip
    sim = json.loads((out1 / "results.json").read_text())["simulation"]
    assert sim["workload"]["task_ms"]["source"] == "set in the simulator's settings"
    again = json.loads((out2 / "results.json").read_text())["simulation"]
    assert again["digest"] == sim["digest"]
    assert "Fleet simulation" in render_report(results, [])


def test_from_run_takes_the_measured_skip_fraction(tmp_path: Path) -> None:
    s = tmp_path / "s.yaml"
    s.write_text(yaml.safe_dump(tiny_scenario_dict()))
    run = tmp_path / "run"
    run.mkdir()
    per = {"a": {"inputs": 30, "skipped": 12}, "b": {"inputs": 10, "skipped": 2}}
    results = {"run_id": "run", "caching": {"filter": {"per_device": per}}}
    (run / "results.json").write_text(json.dumps(results))
    out = tmp_path / "sim"
    args = ["simulate", str(s), "--duration", "10", "--from-run", str(run), "--out", str(out)]
    res = CliRunner().invoke(app, [*args, "-q"])
    assert res.exit_code == 0, res.output
    sim = json.loads((out / "results.json").read_text())["simulation"]
    assert sim["settings"]["skip_probability"] == 14 / 40
    assert "14/40 inputs skipped" in sim["notes"]["skip_probability"]
    (run / "results.json").write_text(json.dumps({"run_id": "run", "status": "completed"}))
    bad = CliRunner().invoke(app, [*args, "-q"])
    assert bad.exit_code == 2 and "the run records no workload" in bad.output
