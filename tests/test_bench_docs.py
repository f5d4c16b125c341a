"""The benchmark figures quoted in docs/ are the ones in benchmarks/results/*.json."""

from __future__ import annotations

import importlib.util
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
