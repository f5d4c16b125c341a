"""One figure, one value (issue 24 item 4): on a tiny run whose phone receives a compressed
artifact, each headline figure reads the same in the terminal summary, results.json and
report.html, and offloading plans on the artifact the phone receives."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from edgeintel.report.sections import fmt

from ..conftest import tiny_scenario_dict


def _sig3(v: float) -> str:
    return f"{v:.3g}"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, str], str]:
    from edgeintel.cli.common import summary_rows
    from edgeintel.examples import load_scenario_with
    from edgeintel.pipeline import run_pipeline

    tmp = tmp_path_factory.mktemp("onefig")
    raw = tiny_scenario_dict()
    # a size budget the 8.1 KiB fp32 model misses: the phone receives a compressed artifact
    raw["settings"]["inference"]["compress"] = {"budget": {"max_model_kb": 8.0}}
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    res = run_pipeline(load_scenario_with(path, None), runs_dir=tmp / "runs", run_id="r")
    results = json.loads(res.results_path.read_text())
    return results, dict(summary_rows(results)), res.report_path.read_text()


def _headline(html: str) -> str:
    m = re.search(r'<section id="headline".*?</section>', html, re.S)
    assert m is not None
    return m.group(0)


def test_chance_level_agrees(run: tuple[dict[str, Any], dict[str, str], str]) -> None:
    results, terminal, html = run
    chance = results["data"]["split"]["chance_accuracy"]
    assert terminal["chance level"].startswith(f"{chance:.3f} ")
    assert f"chance level {chance:.3f} " in _headline(html)
    assert results["edge_training"]["summary"]["chance_accuracy"] == pytest.approx(chance)


def test_accuracy_agrees(run: tuple[dict[str, Any], dict[str, str], str]) -> None:
    results, terminal, html = run
    acc = results["evaluation"]["accuracy_onnx"]
    by = results["model"]["trained_by"]
    assert terminal[f"exported model accuracy ({by})"] == f"{acc:.3f}"
    assert re.search(
        rf"exported ONNX model \({by}\).*?<span class=\"num\">{acc:.3f}</span>",
        _headline(html),
        re.S,
    )


def test_filter_skip_rate_agrees(run: tuple[dict[str, Any], dict[str, str], str]) -> None:
    results, terminal, html = run
    devs = [v for v in results["caching"]["filter"]["per_device"].values() if "inputs" in v]
    skipped, inputs = sum(v["skipped"] for v in devs), sum(v["inputs"] for v in devs)
    said = f"{skipped} of {inputs} ({skipped / inputs:.1%})"
    assert terminal["caching: inputs skipped (all devices)"].startswith(said)
    assert f"{skipped} of {inputs} device inputs skipped ({skipped / inputs:.1%})" in html
    assert results["payoff"]["filter"]["skip_fraction"] == pytest.approx(skipped / inputs, abs=1e-4)


def test_profile_latency_is_the_received_artifact(
    run: tuple[dict[str, Any], dict[str, str], str],
) -> None:
    results, terminal, html = run
    phone = results["compression"]["per_profile"]["phone"]
    assert phone["chosen"] != "fp32"  # the budget made the phone receive a compressed model
    ms = float(phone["latency_ms_device"])
    assert terminal["latency on phone"].startswith(f"p50 {_sig3(ms)} ms")
    assert terminal["latency on phone"].endswith(f"({phone['chosen']})")
    assert f">{fmt(ms)}<" in _headline(html)
    # offloading planned on the artifact the phone receives, and says so
    assert results["offloading"]["planned_on"]["artifact"] == phone["chosen"]
    assert results["offloading"]["planned_on"]["profiles_receive"] == {"phone": phone["chosen"]}
    assert results["payoff"]["compression"]["budgets_met_fp32_misses"] == 1
