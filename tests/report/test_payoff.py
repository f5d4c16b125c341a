"""results.json's ``payoff`` object (issue 24 item 2): hand-computed figures per component,
and on a tiny run: every component present, its sentence opening its report section and its
terminal block."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape

from edgeintel.pipeline.payoff import compute_payoff

KEYS = {"metric", "with", "without", "unit", "better", "why", "section"}


def _results() -> dict[str, Any]:
    return {
        "offloading": {
            "summary": {"decisions": "local x1, edge x1"},
            "devices": [
                {"decision": "local", "latency_ms": 4.0, "energy_mj": 2.0, "edge_ms": 10.0,
                 "cloud_ms": 30.0, "edge_mj": 1.0, "cloud_mj": 3.0},
                {"decision": "edge", "latency_ms": 6.0, "energy_mj": 1.0, "edge_ms": 6.0,
                 "cloud_ms": 30.0, "edge_mj": 1.0, "cloud_mj": 3.0},
            ],
            "baselines": {"local": {"mean_latency_ms": 8.0, "mean_energy_mj": 4.0}},
        },
        "caching": {
            "filter": {"per_device": {
                "a": {"inputs": 10, "skipped": 5, "model_ms_per_input": 2.0,
                      "filter_ms_per_input": 0.5, "compute_saved_ms": 5.0},
                "b": {"inputs": 10, "skipped": 0, "model_ms_per_input": 2.0,
                      "filter_ms_per_input": 0.5, "compute_saved_ms": -5.0},
            }},
            "result_cache": {"per_server": {
                "e": {"requests": 100, "reused": 50, "model_ms": 1.0, "lookup_ms_mean": 0.1,
                      "latency_saved_ms_mean": 0.4},
            }},
        },
        "compression": {"per_profile": {"phone": {
            "chosen": "int8",
            "budget": {"max_latency_ms": 3.0, "max_bytes": None},
            "table": [
                {"candidate": "fp32", "latency_ms": 4.0, "kib": 100.0},
                {"candidate": "int8", "latency_ms": 2.0, "kib": 25.0},
            ],
        }}},
        "edge_training": {"mode": "federated",
                          "summary": {"final_accuracy": 0.90, "central_accuracy": 0.91}},
        "model": {"trained_on": "device shards (federated rounds)"},
    }  # fmt: skip


def test_payoff_figures_by_hand() -> None:
    p = compute_payoff(_results(), "latency", tolerance=0.02)
    assert set(p) == {"offloading", "filter", "result_cache", "compression", "training"}
    assert all(set(v) >= KEYS for v in p.values())
    off = p["offloading"]
    assert (off["with"], off["without"], off["unit"], off["better"]) == (5.0, 8.0, "ms", True)
    # filter: without = 2 devices x 10 inputs x 2 ms; with = 40 - (5 - 5)
    f = p["filter"]
    assert (f["with"], f["without"], f["better"], f["devices_losing"]) == (40.0, 40.0, False, ["b"])
    rc = p["result_cache"]
    assert (rc["with"], rc["without"], rc["better"]) == (pytest.approx(0.6), 1.0, True)
    c = p["compression"]
    assert (c["with"], c["without"], c["budgets_met_fp32_misses"], c["better"]) == (
        2.0,
        4.0,
        1,
        True,
    )
    t = p["training"]
    assert (t["with"], t["without"], t["better"], t["raw_data_left_devices"]) == (
        0.9,
        0.91,
        True,
        False,
    )
    # beyond the tolerance: not better
    assert not compute_payoff(_results(), tolerance=0.005)["training"]["better"]
    # energy objective compares device mJ
    e = compute_payoff(_results(), "energy")["offloading"]
    assert (e["with"], e["without"], e["unit"]) == (1.5, 4.0, "mJ")
    assert "0.5 ms per input (filter) vs 2 ms (model)" in f["why"]
    assert "int8 (2 ms, 25.0 KiB) vs fp32 (4 ms, 100.0 KiB)" in c["why"]


def test_filter_payoff_where_the_filter_stands_aside() -> None:
    """A device where the filter stood aside (decided on its profiling segment) is not one
    it loses on: it costs nothing there; on every device, the sentence says why."""
    res = _results()
    per = res["caching"]["filter"]["per_device"]
    per["b"] = {
        "inputs": 10,
        "skipped": 0,
        "model_ms_per_input": 2.0,
        "filter_ms_per_input": 1.5,
        "compute_saved_ms": 0.0,
        "stands_aside": True,
        "if_used": {"skipped": 6, "skip_fraction": 0.6, "compute_saved_ms": -3.0},
    }
    f = compute_payoff(res)["filter"]
    # with = 40 - 5 (device a) - 0 (b runs the model on every input)
    assert (f["with"], f["without"], f["better"]) == (35.0, 40.0, True)
    assert f["devices_losing"] == [] and f["stands_aside"] == ["b"]
    assert f["why"].endswith("saves device time on every device where it runs, stands aside on 1")
    per["a"] = {**per["b"], "reason": "stands aside: skipping 60% of inputs would save 1.2 ms"}
    f = compute_payoff(res)["filter"]
    assert (f["with"], f["without"], f["better"]) == (40.0, 40.0, False)
    assert f["why"] == (
        "stands aside on every device (e.g. a: skipping 60% of inputs would save 1.2 ms); "
        "40 ms of device time either way"
    )


def test_result_cache_payoff_where_the_cache_stands_aside() -> None:
    """A server where the cache stood aside runs the model on every request: it saves
    nothing there, and the sentence says why."""
    res = _results()
    per = res["caching"]["result_cache"]["per_server"]
    per["f"] = {"requests": 100, "reused": 90, "model_ms": 0.05, "lookup_ms_mean": 0.1,
                "latency_saved_ms_mean": -0.055, "stands_aside": True,
                "reason": "stands aside: a lookup (0.1 ms) costs at least the model"}  # fmt: skip
    rc = compute_payoff(res)["result_cache"]
    # without = (100 x 1.0 + 100 x 0.05) / 200 = 0.525; with = 0.525 - 100 x 0.4 / 200 = 0.325
    assert (rc["with"], rc["without"], rc["better"]) == (0.325, 0.525, True)
    assert rc["stands_aside"] == ["f"]
    assert rc["why"].startswith("reuses 50.0% of requests: lookup 0.1 ms")
    assert rc["why"].endswith("; stands aside on 1 of 2 servers")
    del per["e"]
    rc = compute_payoff(res)["result_cache"]
    assert (rc["with"], rc["without"], rc["better"]) == (0.05, 0.05, False)
    assert rc["why"] == (
        "stands aside on every edge server (e.g. f: a lookup (0.1 ms) costs at least the "
        "model); 0.05 ms of edge time per request either way"
    )


def test_filter_pays_by_hand() -> None:
    from edgeintel.caching.filter_cost import aside_reason, cache_pays, filter_pays

    assert filter_pays(0.5, 1.0, 3.0)  # saves 1.5 - 1.0 = 0.5 ms per input
    assert not filter_pays(0.5, 1.0, 2.0)  # 1.0 - 1.0 = 0: no gain
    assert not filter_pays(0.8, 1.0, 1.2)  # 0.96 - 1.0 < 0
    assert cache_pays(0.1, 0.3) and not cache_pays(0.3, 0.3) and not cache_pays(0.4, 0.3)
    assert aside_reason(0.8, 1.0, 1.2) == (
        "stands aside: skipping 80% of inputs (profiling segment) would save 0.96 ms of "
        "model per input, less than its own 1 ms per input"
    )


def test_payoff_absent_components_are_left_out() -> None:
    assert compute_payoff({}) == {}


def test_run_payoff_opens_sections_and_summary(tiny_scenario_file: Path, tmp_path: Path) -> None:
    from edgeintel.cli.common import summary_rows
    from edgeintel.examples import load_scenario_with
    from edgeintel.pipeline import run_pipeline

    sc = load_scenario_with(tiny_scenario_file, None)
    res = run_pipeline(sc, runs_dir=tmp_path / "runs", run_id="p")

    payoff = json.loads(res.results_path.read_text())["payoff"]
    assert set(payoff) == {"offloading", "filter", "result_cache", "compression", "training"}
    html = res.report_path.read_text()
    rows = summary_rows(res.results)
    labels = [k for k, _ in rows]
    for name, v in payoff.items():
        assert set(v) >= KEYS, name
        assert isinstance(v["with"], float | int) and isinstance(v["without"], float | int)
        # the sentence is in the report, inside its component's section, before its tables
        sec = re.search(rf'<section id="sec-{v["section"]}".*?</section>', html, re.S)
        assert sec is not None, v["section"]
        body = sec.group(0)
        why = str(escape(v["why"]))
        assert why in body, name
        if "<table" in body:
            assert body.index(why) < body.index("<table"), name
        # and in the terminal summary, first in its section's block
        label = f"{name.replace('_', ' ')}: why"
        assert (label, v["why"]) in rows
        first = labels.index(label)
        assert all(not k.startswith(v["section"].replace("_", " ") + ":") for k in labels[:first])


def test_payoff_reasons_name_the_task_kinds_metric() -> None:
    """A regression run: RMSE, lower is better; the tolerance is in target units."""
    res = _results()
    res["edge_training"] = {
        "mode": "federated",
        "metric": "rmse",
        "higher_is_better": False,
        "summary": {"final_rmse": 1.10, "central_rmse": 1.00},
    }
    res["compression"]["metric"] = "rmse"
    for row, v in zip(
        res["compression"]["per_profile"]["phone"]["table"], (1.0, 1.04), strict=True
    ):
        row["rmse"] = v
    t = compute_payoff(res, tolerance=0.05)["training"]
    assert (t["with"], t["without"], t["unit"], t["better"]) == (1.1, 1.0, "rmse", False)
    assert t["metric"] == "test rmse (edge-trained vs central baseline)"
    assert "reaches rmse 1.1 vs 1 central (0.1 worse, tolerance 0.05)" in t["why"]
    assert compute_payoff(res, tolerance=0.2)["training"]["better"] is True
    res["edge_training"]["summary"]["final_rmse"] = 0.9  # edge better than central
    why = compute_payoff(res, tolerance=0.05)["training"]["why"]
    assert "reaches rmse 0.9 vs 1 central (0.1 better, tolerance 0.05)" in why
    c = compute_payoff(res)["compression"]
    assert (
        "phone receives int8 (2 ms, 25.0 KiB, rmse 1.04) vs fp32 (4 ms, 100.0 KiB, rmse 1)"
        in (c["why"])
    )


def test_the_filters_figures_state_the_stream_they_stand_on() -> None:
    # issue 24 item 6: a synthetic repetition of real samples is said beside the filter
    from edgeintel.pipeline.sections.caching_section import stream_sentence

    said = stream_sentence({"frames_per_sample": 5, "noise": 0.02})
    assert "synthetic" in said and "5 consecutive frames" in said and "0.02" in said
    assert "once" in stream_sentence({"frames_per_sample": 1, "noise": 0.0})


def test_synthetic_caching_experiments_are_disclosed_beside_their_figures() -> None:
    from edgeintel.pipeline.sections.caching_section import render_caching
    from edgeintel.report.sections import RenderContext

    data = {
        "result_cache": {"per_server": {}, "config": {"requests": 2000, "noise": 0.03}},
        "placement": {
            "catalogue": {"items": 2000, "item_mb": 10.0, "zipf_alpha": 0.8,
                          "requests_per_station": 5000, "locality": 0.3},
        },
    }  # fmt: skip
    html = str(render_caching(data, [], RenderContext({})))
    assert "2000 requests per server" in html and "noise of standard deviation 0.03" in html
    assert "2000 items of 10.0 MB, Zipf popularity exponent 0.8" in html
