"""The section-renderer registry, the table helpers and the headline card (no browser)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

import edgeintel.pipeline  # noqa: F401  (registers every stage's section renderer)
from edgeintel.report.figures import Figure
from edgeintel.report.html import render_report
from edgeintel.report.sections import (
    SECTIONS,
    RenderContext,
    accuracy_margin,
    check_accuracy,
    fmt,
    generic_section,
    register_section,
    table,
)

DATA = Path(__file__).parent / "data"


#: Run metadata, not component sections (shown in the headline and "Run details").
META = {"run_id", "created", "status", "error", "scenario", "machine", "versions", "stages",
        "timings_s"}  # fmt: skip
COMPONENT_SECTIONS = ("data", "training", "edge_training", "model", "evaluation", "offloading",
                      "compression", "caching", "runtime")  # fmt: skip


def tiny_results() -> dict[str, Any]:
    """results.json of a real tiny run (digits, 4 devices, federated 3 rounds, compress), with
    the ``offloading`` and ``caching`` sections of a real tiny run of the same scenario."""
    res: dict[str, Any] = json.loads((DATA / "tiny_run_results.json").read_text())
    more = json.loads((DATA / "tiny_run_offloading_caching.json").read_text())
    res["offloading"], res["caching"] = more["offloading"], more["caching"]
    # the runtime section of a real tiny deployment (3 agents, cloud through the edge,
    # a backhaul outage in its trace)
    res["runtime"] = json.loads((DATA / "tiny_run_runtime.json").read_text())["runtime"]
    return res


def _section(html: str, name: str) -> str:
    sec = html[html.index(f'data-section="{name}"') :]
    return sec[: sec.index("</section>")]


def test_every_pipeline_section_has_a_registered_renderer() -> None:
    res = tiny_results()
    sections = [k for k, v in res.items() if k not in META and isinstance(v, dict)]
    assert sorted(sections) == sorted(COMPONENT_SECTIONS)
    for key in sections:
        assert key in SECTIONS, f"no renderer registered for results section {key!r}"
    orders = [SECTIONS.get(k).order for k in COMPONENT_SECTIONS]
    assert orders == sorted(orders)
    html = render_report(res, [])
    assert "renderer of section" not in html  # no renderer raised (and fell back)


def test_report_shows_sections_as_tables_never_as_json() -> None:
    html = render_report(tiny_results(), [])
    for key in ("headline", "topology", *COMPONENT_SECTIONS, "run"):
        assert f'data-section="{key}"' in html, key
    body = html[html.index("<body>") :]
    # no JSON text: no dict/list literals leak into the page
    assert not re.search(r"\{&#34;|\{\"|\[\{", body)
    assert "…" not in body  # nothing truncated
    # the sha256 of the model is shown whole
    sha = tiny_results()["model"]["onnx"]["sha256"]
    assert sha in body


def test_headline_tells_the_story() -> None:
    html = render_report(tiny_results(), [])
    head = html[html.index('id="headline"') : html.index('id="topology"')]
    assert "central baseline" in head and "federated (edge)" in head
    assert "chance level 0.100" in head
    assert "reaches 0.450 against 0.190 for the central baseline (+26.0 points)" in head
    # per profile: what it receives and why
    assert "receives" in head and "fp32 (8.1 KiB)" in head and "meets the budget" in head
    # cost per tier
    assert "device ↔ edge" in head and "84,384" in head
    # warnings: 100 test samples is too few; int8 slower than fp32 in this run
    assert "only 100 samples" in head
    assert "int8 is slower than fp32" in head


def test_topology_svg_names_tiers_groups_and_links() -> None:
    html = render_report(tiny_results(), [])
    svg = html[html.index("<svg") : html.index("</svg>")]
    assert "phone × 4" in svg and "micro base station" in svg and "cloud" in svg
    assert "100 Mbit/s · 20 ms" in svg and "20 Mbit/s · 10 ms" in svg


def test_near_chance_and_no_improvement_warnings() -> None:
    res = tiny_results()
    hist = res["edge_training"]["history"]
    for r in hist:
        r["accuracy"] = 0.11
    res["edge_training"]["summary"]["final_accuracy"] = 0.11
    html = render_report(res, [])
    assert "federated training: accuracy 0.110 is near chance" in html
    assert "federated training: no improvement across rounds" in html
    # the unmodified run improves (0.12 -> 0.45): no such warning
    assert "no improvement across rounds" not in render_report(tiny_results(), [])


def test_accuracy_margin_by_hand() -> None:
    # 2 standard errors of a chance classifier: 2 * sqrt(0.1 * 0.9 / 100) = 0.06
    assert accuracy_margin(0.1, 100) == pytest.approx(0.06)
    assert accuracy_margin(0.1, 10_000) == 0.05  # at least 5 points
    ctx = RenderContext({"data": {"classes": list("abcdefghij")}})
    check_accuracy(ctx, "x", [0.15], n_test=100)
    assert ctx.headline.warnings and "near chance" in ctx.headline.warnings[0]
    ctx = RenderContext({"data": {"classes": list("abcdefghij")}})
    check_accuracy(ctx, "x", [0.17], n_test=100)
    assert not ctx.headline.warnings


def test_long_tables_collapse_but_keep_every_row() -> None:
    rows = [{"i": i, "v": i * 0.5} for i in range(40)]
    html = str(table(rows, collapse_after=12))
    assert html.count("<tr>") + html.count("<tr ") == 40 + 2  # 40 rows + 2 header rows
    assert "<details><summary>28 more rows</summary>" in html


def test_values_are_escaped_and_formatted() -> None:
    html = str(table([{"name": "<script>x</script>", "v": 0.123456789, "n": 123456}]))
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "0.1235" in html and "123,456" in html
    assert fmt(None) == "—" and fmt(True) == "yes" and fmt(float("nan")) == "n/a"
    assert fmt(1.5e-5) == "1.500e-05"


def test_unknown_section_falls_back_to_generic_tables() -> None:
    res = tiny_results()
    res["offloading_demo"] = {
        "planner": "min-cut",
        "per_device": [{"device": "phone-0", "tier": "edge", "latency_ms": 3.2}],
        "nested": {"a": {"b": 1}},
    }
    fig = Figure("offloading_demo", "A figure", "iVBORw0KGgo=", "caption here")
    html = render_report(res, [fig])
    sec = html[html.index('data-section="offloading_demo"') :]
    sec = sec[: sec.index("</section>")]
    assert "Offloading demo" in html and "min-cut" in sec and "phone-0" in sec
    assert "A figure" in sec  # figures of the section are appended


def test_registered_renderer_feeds_the_headline_and_a_broken_one_falls_back() -> None:
    name = "zz_test_section"

    @register_section(name, title="ZZ test", order=99)
    def _render(data: dict[str, Any], figures: list[Figure], ctx: RenderContext) -> str:
        ctx.headline.profile("phone", "runs where", data["where"])
        ctx.headline.tier("device ↔ edge", "requests", 12)
        ctx.warn("a zz warning")
        if data.get("boom"):
            raise KeyError("boom")
        return "<p class='zz'>ok</p>"

    try:
        res = tiny_results()
        res[name] = {"where": "edge server micro-1"}
        html = render_report(res, [])
        assert "<p class='zz'>ok</p>" in html and "edge server micro-1" in html
        assert "a zz warning" in html and "requests" in html
        res[name] = {"where": "x", "boom": True}
        html = render_report(res, [])
        assert "renderer of section &#39;zz_test_section&#39; failed" in html
        assert 'data-section="zz_test_section"' in html  # still shown, as tables
    finally:
        SECTIONS._items.pop(name)


def test_failed_run_shows_its_error_first() -> None:
    res = copy.deepcopy(tiny_results())
    res["status"], res["error"] = "failed", "stage compress: out of memory"
    html = render_report(res, [])
    head = html[html.index('id="headline"') : html.index('id="topology"')]
    assert "failed" in head and "stage compress: out of memory" in head


def test_generic_section_direct() -> None:
    ctx = RenderContext({})
    html = str(generic_section({"a": 1, "rows": [{"x": 1}, {"x": 2}]}, [], ctx))
    assert "Rows" in html and html.count('<td class="num">') >= 2


def test_no_improvement_is_not_claimed_at_the_ceiling() -> None:
    ctx = RenderContext({"data": {"classes": ["a", "b"]}})
    check_accuracy(ctx, "x", [1.0, 1.0, 1.0], n_test=24)
    assert not ctx.headline.warnings
    check_accuracy(ctx, "x", [0.6, 0.58, 0.61, 0.6], n_test=1000)
    assert ctx.headline.warnings == [
        "x: no improvement across rounds (accuracy 0.600 after the first round, 0.600 after "
        "the last)"
    ]


def test_privacy_reaches_the_headline_and_its_own_tables() -> None:
    res = tiny_results()
    res["edge_training"]["privacy"] = {
        "dp": {"noise_multiplier": 1.0, "clipping": "fixed", "delta": 1e-5, "epsilon": 3.21,
               "stopped_by_budget": True,
               "epsilon_vs_round": [{"round": 1, "epsilon": 1.5}, {"round": 2, "epsilon": 3.21}]},
        "secure_aggregation": {"scale_bits": 24, "threshold": 0.5},
    }  # fmt: skip
    html = render_report(res, [])
    head = html[html.index('id="headline"') : html.index('id="topology"')]
    assert "epsilon 3.21 at delta 1e-05 (stopped by the budget)" in head
    assert "secure aggregation" in head
    sec = html[html.index('data-section="edge_training"') :]
    assert "<h3>Privacy</h3>" in sec and "epsilon per round" in sec and "scale bits" in sec


def test_warns_when_compression_beats_the_model_it_compresses() -> None:
    res = tiny_results()
    assert "beats the model" not in render_report(res, [])
    res["compression"]["per_profile"]["phone"]["accuracy"] = 0.9
    html = render_report(res, [])
    assert "the artifact for phone (fp32, accuracy 0.900) beats the model it compresses" in html


def test_busy_machine_is_flagged_as_timing_noise() -> None:
    res = tiny_results()
    res["machine"].update(load_1min=0.5, cpus=2)
    assert "the machine was busy" not in render_report(res, [])
    res["machine"].update(load_1min=7.5, cpus=2)
    assert "timing noise: the machine was busy (1-min load 7.5 on 2 CPUs)" in render_report(res, [])


def test_offloading_section_plan_per_device_against_the_baselines() -> None:
    res = tiny_results()
    html = render_report(res, [])
    sec = _section(html, "offloading")
    assert "Plan per device" in sec and "layers on device" in sec and "all-cloud (ms)" in sec
    assert sec.count(">phone-") >= 4 and "11/11" in sec  # every device, its split point
    assert "10.13" in sec and "30.12" in sec  # all-edge / all-cloud latency (ms)
    assert "The plan against the baselines" in sec and "all-local" in sec
    assert "Splits executed for real" in sec
    head = html[html.index('id="headline"') : html.index('id="topology"')]
    assert "inference runs" in head and "local ×4" in head
    assert "plan (milp): local x4, mean 0.041 ms per request" in head
    assert "miss their deadline" not in head and "executed split differs" not in head
    # a device that misses, an executed split that disagrees: both reach the headline
    res["offloading"]["devices"][1]["meets_deadline"] = False
    res["offloading"]["executed_splits"][0]["max_abs_diff"] = 0.5
    html = render_report(res, [])
    assert "offloading: 1 of 4 devices miss their deadline (phone-1)" in html
    assert "executed split differs from the unsplit model by 0.5" in html
    assert '<tr class="bad">' in _section(html, "offloading")


def test_caching_section_filter_cache_policies_placement() -> None:
    res = tiny_results()
    html = render_report(res, [])
    sec = _section(html, "caching")
    # filter per device, with the tuned threshold and the reason it was chosen
    assert "Filter per device" in sec and "why this threshold" in sec
    assert "largest skip on the 15-input profiling segment among 84" in sec
    assert "0.3811" in sec and sec.count(">phone-") >= 4
    # result cache per edge server
    assert "micro-1" in sec and "0.8715" in sec and "approximate hits" in sec
    # policies against OPT: lru 0.742 vs opt 0.4645 = 27.75 points above
    assert "above OPT (points)" in sec and "27.75" in sec and "1.597" in sec
    # placement: cooperative vs single-BS, backhaul in MiB, the LP bound
    assert "cooperative greedy" in sec and "single-BS popularity" in sec and "30,720" in sec
    assert "LP bound" in sec
    head = html[html.index('id="headline"') : html.index('id="topology"')]
    assert "28 of 210 device inputs skipped (13.3%)" in head
    assert "reusing a cached result is slower than recomputing it for this model at micro-1" in head
    assert "redundancy filter costs more device time than it saves on 4 of 4 devices" in head
    assert "bytes not uploaded (redundancy filter)" in head
    # a model slow enough for reuse to pay: no such warnings
    for v in res["caching"]["result_cache"]["per_server"].values():
        v["latency_saved_ms_mean"] = 2.5
    for v in res["caching"]["filter"]["per_device"].values():
        v["compute_saved_ms"] = 10.0
    head = render_report(res, [])
    assert "slower than recomputing" not in head and "costs more device time" not in head


def test_caching_section_says_where_filter_and_cache_stand_aside() -> None:
    """A server whose cache stands aside runs without one: the headline gives its reason
    (as the terminal summary does), not a hit ratio; a device whose filter stands aside is
    named with its reason, not counted as one it loses on."""
    res = tiny_results()
    reason = "stands aside: a lookup (0.08 ms, on every request) costs at least the model"
    for v in res["caching"]["result_cache"]["per_server"].values():
        v.update(stands_aside=True, reason=reason)
    for v in res["caching"]["filter"]["per_device"].values():
        v.update(stands_aside=True, reason="stands aside: skipping 5% of inputs", skipped=0,
                 compute_saved_ms=0.0)  # fmt: skip
    html = render_report(res, [])
    head = html[html.index('id="headline"') : html.index('id="topology"')]
    assert reason in head and "hit ratio" not in head
    assert "the result cache stands aside at micro-1" in head
    assert "slower than recomputing" not in head
    assert "redundancy filter stands aside on 4 of 4 devices" in head
    assert "costs more device time" not in head


@pytest.mark.parametrize("section", ["offloading", "caching"])
def test_new_component_renderers_are_not_the_generic_one(section: str) -> None:
    spec = SECTIONS.get(section)
    assert spec.render is not generic_section
    assert spec.render.__module__ == f"edgeintel.pipeline.sections.{section}_section"
    ctx = RenderContext(tiny_results())
    html = str(spec.render(tiny_results()[section], [], ctx))
    assert html.count("<table") >= 3 and ctx.headline.facts
