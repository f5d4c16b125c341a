"""The benchmark figures quoted in docs/ are the ones in benchmarks/results/*.json."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _render_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "render_docs", ROOT / "benchmarks" / "render_docs.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_docs_are_in_sync_with_benchmark_results() -> None:
    mod = _render_docs()
    stale = mod.check()
    assert stale == [], f"run benchmarks/render_docs.py: {[p.name for p in stale]} are stale"
    # and the docs do quote every results file's targets
    text = "".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    for area in mod.load_results():
        assert f"<!-- bench:targets:{area} -->" in text, area


def test_render_rewrites_only_marked_blocks() -> None:
    mod = _render_docs()
    res = {
        "x": {
            "targets": [
                {"name": "gap", "value": 0.5, "goal": "<= 1", "unit": "points", "met": True},
                {"name": "ratio", "value": 123.4, "goal": ">= 200", "unit": "x", "met": False},
            ]
        }
    }
    text = "keep 0.9\n<!-- bench:targets:x -->\nstale 0.1\n<!-- /bench -->\nkeep too\n"
    out = mod.render(text, res)
    assert out.startswith("keep 0.9\n<!-- bench:targets:x -->\n| target |")
    assert "| gap | 0.5 points | <= 1 | yes |" in out
    assert "| ratio | 123 x | >= 200 | **no** |" in out
    assert "stale" not in out and out.endswith("<!-- /bench -->\nkeep too\n")
    assert mod.render(out, res) == out  # idempotent
    with pytest.raises(KeyError, match="unknown bench block"):
        mod.render("<!-- bench:nope -->\n<!-- /bench -->", res)
    with pytest.raises(KeyError, match=r"no benchmarks/results/y\.json"):
        mod.render("<!-- bench:targets:y -->\n<!-- /bench -->", res)


_FIG_RES = {
    "x": {
        "targets": [{"name": "gap |abs|", "value": 0.123456}],
        "details": {"clips": {"bikes.mp4": {"skip": 0.7503}}, "runs": [{"n": 12345.6}]},
    }
}


def test_inline_figure_renders_the_json_value_formatted() -> None:
    mod = _render_docs()
    text = (
        "skip <!-- fig:x:details.clips.bikes.mp4.skip|.1% -->99%<!-- /fig -->, "
        "gap <!-- fig:x:targets.name=gap |abs|.value|.3f -->1<!-- /fig -->, "
        "n <!-- fig:x:details.runs.0.n|,.0f -->?<!-- /fig -->\n"
    )
    out = mod.render(text, _FIG_RES)
    assert f"-->{format(0.7503, '.1%')}<!--" in out and "-->75.0%<!--" in out
    assert "-->0.123<!--" in out and "-->12,346<!--" in out
    assert mod.render(out, _FIG_RES) == out  # idempotent
    assert mod.stale_figures(out, _FIG_RES) == []
    # the upper-case spelling in prose is not a marker, and a marker does not span lines
    doc = "`<!-- fig:AREA:PATH|SPEC -->value<!-- /fig -->`\n<!-- fig:x:a|d -->\n1<!-- /fig -->\n"
    assert mod.render(doc, _FIG_RES) == doc


def test_inline_figure_out_of_sync_is_named() -> None:
    mod = _render_docs()
    text = "a\nskip <!-- fig:x:details.clips.bikes.mp4.skip|.3f -->0.686<!-- /fig -->\n"
    assert mod.render(text, _FIG_RES) != text
    (msg,) = mod.stale_figures(text, _FIG_RES, "docs/c.md")
    assert msg.startswith("docs/c.md:2: figure x:details.clips.bikes.mp4.skip")
    assert "'0.686'" in msg and "'0.750'" in msg


def test_inline_figure_bad_path_fails_with_doc_line_area_path(tmp_path: Path) -> None:
    mod = _render_docs()
    bad = "one\ntwo <!-- fig:x:details.clips.cars.mp4.skip|.3f -->0.5<!-- /fig -->\n"
    with pytest.raises(mod.FigureError, match=r"^docs/c\.md:2: figure x:details\.clips\.cars"):
        mod.render(bad, _FIG_RES, "docs/c.md")
    with pytest.raises(mod.FigureError, match=r"no key 'cars'"):
        mod.render(bad, _FIG_RES)
    with pytest.raises(mod.FigureError, match=r"no benchmarks/results/y\.json"):
        mod.render("<!-- fig:y:a|.1f -->1<!-- /fig -->", _FIG_RES)
    with pytest.raises(mod.FigureError, match="out of range"):
        mod.render("<!-- fig:x:details.runs.3.n|.1f -->1<!-- /fig -->", _FIG_RES)
    # check() over a docs folder raises the same named error
    docs, results = tmp_path / "docs", tmp_path / "results"
    docs.mkdir()
    results.mkdir()
    (results / "x.json").write_text(json.dumps(_FIG_RES["x"]))
    (docs / "c.md").write_text(bad)
    with pytest.raises(mod.FigureError, match=r"c\.md:2: figure x:details\.clips\.cars"):
        mod.check(docs, results)
    (docs / "c.md").write_text(bad.replace("cars", "bikes"))
    assert mod.check(docs, results) == [docs / "c.md"]  # 0.5 is stale: 0.750
