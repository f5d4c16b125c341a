"""The sweep machinery without the simulator: grids, scenario paths, parallel map, table."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import pytest

from edgeintel.errors import ConfigError
from edgeintel.sim.sweep import Grid, SweepTable, load_grid, run_parallel, set_path


def point_figures(point: dict[str, Any]) -> dict[str, Any]:
    """A deterministic stand-in for a simulation (module level: pickled by reference)."""
    threads = os.environ.get("OMP_NUM_THREADS")
    return {**point, "y": point["a"] * 10 + point["seed"], "omp": threads, "pid": os.getpid()}


def test_grid_points_order_and_validation(tmp_path: Path) -> None:
    g = Grid({"a": (1, 2), "b": ("x", "y")}, seeds=(0, 1))
    pts = g.points()
    assert len(pts) == 8
    assert pts[0] == {"a": 1, "b": "x", "seed": 0} and pts[1] == {"a": 1, "b": "x", "seed": 1}
    assert pts[-1] == {"a": 2, "b": "y", "seed": 1}
    f = tmp_path / "grid.yaml"
    f.write_text("axes:\n  policy: [local, edge]\n  bandwidth_mbps: [5, 50]\nseeds: [3, 4]\n")
    assert load_grid(f).to_json() == {
        "axes": {"policy": ["local", "edge"], "bandwidth_mbps": [5, 50]},
        "seeds": [3, 4],
    }
    for text, msg in [
        ("axes: {}\n", "at least one axis"),
        ("axes: {a: 3}\n", "axes.a: expected a list"),
        ("axes: {a: []}\n", "non-empty list"),
        ("axes: {a: [1, 1]}\n", "repeat"),
        ("axes: {a: [1]}\nseeds: [-1]\n", "seeds"),
        ("axes: {a: [1]}\nsweeps: 3\n", "unknown key"),
        ("axes: [1\n", "not valid YAML"),
    ]:
        f.write_text(text)
        with pytest.raises(ConfigError, match=msg) as err:
            load_grid(f)
        assert str(f) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="not found"):
        load_grid(tmp_path / "missing.yaml")


def test_set_path_wildcards_aliases_and_typos() -> None:
    raw: dict[str, Any] = {
        "devices": [{"name": "a", "link": {"bandwidth_mbps": 1}}, {"name": "b", "link": {}}],
        "settings": {},
    }
    set_path(raw, "bandwidth_mbps", 7.5)  # alias of devices.*.link.bandwidth_mbps
    assert [d["link"]["bandwidth_mbps"] for d in raw["devices"]] == [7.5, 7.5]
    set_path(raw, "devices.1.count", 40)
    assert raw["devices"][1]["count"] == 40
    set_path(raw, "settings.caching.policy", "lru")  # an optional block left at default
    assert raw["settings"]["caching"] == {"policy": "lru"}
    with pytest.raises(ConfigError, match="list index < 2"):
        set_path(raw, "devices.5.count", 1)
    with pytest.raises(ConfigError, match="is not a list"):
        set_path(raw, "settings.*.x", 1)
    with pytest.raises(ConfigError, match="is a value"):
        set_path(raw, "devices.0.name.x", 1)


def test_run_parallel_processes_keep_order_and_pin_threads() -> None:
    items = Grid({"a": (1, 2, 3)}, seeds=(0, 1)).points()
    seen: list[tuple[int, int]] = []
    out = run_parallel(point_figures, items, workers=2, progress=lambda d, n: seen.append((d, n)))
    assert [r["y"] for r in out] == [10, 11, 20, 21, 30, 31]  # grid order, not finish order
    assert {r["omp"] for r in out} == {"1"}  # one native thread per worker process
    assert os.getpid() not in {r["pid"] for r in out} and len({r["pid"] for r in out}) >= 1
    assert seen[-1] == (6, 6) and len(seen) == 6
    inproc = run_parallel(point_figures, items, workers=1)
    assert [r["y"] for r in inproc] == [r["y"] for r in out]
    assert {r["pid"] for r in inproc} == {os.getpid()}
    with pytest.raises(ConfigError, match="--workers"):
        run_parallel(point_figures, items, workers=0)


def test_table_csv_json_plot(tmp_path: Path) -> None:
    g = Grid({"policy": ("local", "edge"), "devices": (10, 100, 1000)}, seeds=(0, 1))
    rows = [
        {**p, "latency_p95_s": (p["devices"] / 1000) * (2 if p["policy"] == "edge" else 1)
         + p["seed"], "cpu_s": 0.1}
        for p in g.points()
    ]  # fmt: skip
    t = SweepTable(g, rows)
    assert t.columns == ["policy", "devices", "seed", "latency_p95_s", "cpu_s"]
    assert t.default_x() == "devices"
    agg = t.aggregate("latency_p95_s")
    # mean over seeds 0 and 1 (+0.5), std of {v, v+1} = 0.7071
    assert agg["policy=edge"][2] == (1000, pytest.approx(2.5), pytest.approx(0.5**0.5))
    assert agg["policy=local"][0] == (10, pytest.approx(0.51), pytest.approx(0.5**0.5))
    files = t.write(tmp_path / "out")
    with files["csv"].open() as fh:
        got = list(csv.DictReader(fh))
    assert len(got) == 12 and got[0]["policy"] == "local" and float(got[0]["cpu_s"]) == 0.1
    js = json.loads(files["json"].read_text())
    assert js["timing_columns"] == ["cpu_s"] and js["rows"] == rows
    assert files["png"].stat().st_size > 5000
    assert t.deterministic_rows()[0] == {k: v for k, v in rows[0].items() if k != "cpu_s"}


def test_default_plot_is_tail_latency_and_energy() -> None:
    """Not the first columns of the summary (devices, duration_s: inputs, not outcomes)."""
    g = Grid({"policy": ("local", "edge")}, seeds=(0,))
    figs = {"devices": 10, "duration_s": 5.0, "tasks": 40, "latency_p50_s": 0.1,
            "latency_p95_s": 0.2, "energy_j": 3.0, "cpu_s": 0.1}  # fmt: skip
    t = SweepTable(g, [{**p, **figs} for p in g.points()])
    assert t.default_metrics() == ["latency_p95_s", "energy_j"]
    bare = SweepTable(g, [{**p, "devices": 10, "skipped": 1, "cpu_s": 0.1} for p in g.points()])
    assert bare.default_metrics() == ["skipped"]
