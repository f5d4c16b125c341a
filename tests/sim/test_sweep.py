"""Sweeps of the simulator: processes and Ray give the same table; the CLI; bad grids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from edgeintel.cli import app
from edgeintel.errors import ConfigError
from edgeintel.scenario import load_scenario
from edgeintel.sim.sweep import Grid, sweep, sweep_points
from tests.conftest import SCENARIOS

GRID = {
    "axes": {
        "policy": ["edge", "cloud"],
        "devices": [10, 40],
        "bandwidth_mbps": [5, 50],
        "duration_s": [20],
    },
    "seeds": [0, 1],
}


@pytest.fixture(scope="module")
def scenario():  # type: ignore[no-untyped-def]
    return load_scenario(SCENARIOS / "default.yaml")


def test_points_apply_every_kind_of_axis(scenario) -> None:  # type: ignore[no-untyped-def]
    pts = sweep_points(scenario, Grid.from_mapping(GRID))
    assert len(pts) == 16
    p = pts[-1]
    assert p.values == {"policy": "cloud", "devices": 40, "bandwidth_mbps": 50,
                        "duration_s": 20, "seed": 1}  # fmt: skip
    assert p.policy == "cloud" and p.settings.devices == 40 and p.settings.seed == 1
    assert {g.link.bandwidth_mbps for g in p.scenario.devices} == {50}
    assert {g.link.bandwidth_mbps for g in pts[0].scenario.devices} == {5}
    assert {g.link.bandwidth_mbps for g in scenario.devices} == {6, 17}  # base untouched
    for axes, msg in [
        ({"policy": ["magic"]}, "not a policy"),
        ({"colour": [1]}, "not a simulator setting"),
        ({"placement": ["nope"]}, "placement"),
        ({"devices": [0]}, "devices"),
        ({"devices.9.count": [3]}, "list index"),
        ({"bandwidth_mbps": [-1]}, "bandwidth_mbps"),
    ]:
        with pytest.raises(ConfigError, match=msg) as err:
            sweep_points(scenario, Grid.from_mapping({"axes": axes}))
        assert "\n" not in str(err.value)


def test_sweep_in_processes_equals_in_process(scenario) -> None:  # type: ignore[no-untyped-def]
    g = Grid.from_mapping(GRID)
    one = sweep(scenario, g, workers=1)
    two = sweep(scenario, g, workers=2)
    assert two.backend == "processes" and one.backend == "in-process"
    assert one.deterministic_rows() == two.deterministic_rows()
    rows = {(r["policy"], r["devices"], r["bandwidth_mbps"], r["seed"]): r for r in two.rows}
    # more devices -> more tasks; a slower access link -> slower edge offloads
    assert rows[("edge", 40, 50, 0)]["tasks"] > rows[("edge", 10, 50, 0)]["tasks"]
    assert rows[("edge", 40, 5, 0)]["latency_p50_s"] > rows[("edge", 40, 50, 0)]["latency_p50_s"]
    assert rows[("edge", 40, 50, 0)]["tasks"] != rows[("edge", 40, 50, 1)]["tasks"]  # seeds used
    assert rows[("cloud", 40, 50, 0)]["completed_cloud"] > 0
    assert rows[("edge", 40, 50, 0)]["completed_cloud"] == 0


def test_cli_sweep_writes_table_and_plot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeintel.cli.common import console

    monkeypatch.setattr(console, "width", 240)  # a wide terminal: the table still fits 100
    grid = tmp_path / "grid.yaml"
    axes = {"policy": ["local", "edge"], "devices": [5, 20], "duration_s": [10],
            "traces.bandwidth_sigma": [0.25]}  # fmt: skip
    grid.write_text(yaml.safe_dump({"axes": axes, "seeds": [3]}, sort_keys=False))
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app, ["sweep", str(SCENARIOS / "default.yaml"), "--grid", str(grid), "--workers", "1",
              "--out", str(out), "-q", "--set", "settings.sim.task_ms=5"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert max(len(x) for x in lines) <= 100, "\n".join(lines)
    assert any("p95 ms" in x and "energy J" in x for x in lines)
    js = json.loads((out / "sweep.json").read_text())
    assert len(js["rows"]) == 4 and js["grid"]["seeds"] == [3]
    assert (
        (out / "sweep.csv")
        .read_text()
        .splitlines()[0]
        .startswith("policy,devices,duration_s,traces.bandwidth_sigma,seed")
    )
    assert (out / "sweep.png").stat().st_size > 5000
    for args, msg in [
        (["--grid", str(tmp_path / "none.yaml")], "grid file not found"),
        (["--grid", str(grid), "--workers", "0"], "--workers"),
        (["--grid", str(grid), "--x", "colour"], "--x colour"),
        (["--grid", str(grid), "--metric", "nope", "--workers", "1"], "--metric nope"),
    ]:
        bad = CliRunner().invoke(app, ["sweep", str(SCENARIOS / "default.yaml"), *args,
                                       "--out", str(tmp_path / "o2"), "-q"])  # fmt: skip
        assert bad.exit_code == 2, bad.output
        assert msg in bad.output and "Traceback" not in bad.output


def test_missing_ray_extra_is_one_line(monkeypatch: pytest.MonkeyPatch, scenario) -> None:  # type: ignore[no-untyped-def]
    import sys

    from edgeintel.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    g = Grid({"devices": (5,)}, (0,))
    with pytest.raises(MissingExtraError, match=r"pip install 'edgeintel\[ray\]'"):
        sweep(scenario, g, ray_address="auto")


@pytest.mark.slow
def test_sweep_on_a_local_ray_cluster_equals_processes(ray_cluster: str, scenario) -> None:  # type: ignore[no-untyped-def]
    g = Grid.from_mapping(GRID)
    on_ray = sweep(scenario, g, ray_address=ray_cluster)
    assert on_ray.backend == "ray"
    local = sweep(scenario, g, workers=1)
    assert on_ray.deterministic_rows() == local.deterministic_rows()
    import ray

    assert not ray.is_initialized()  # the driver disconnected


def test_unreachable_ray_address_is_one_line(scenario) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("ray")
    from edgeintel.errors import EdgeIntelError

    g = Grid({"devices": (5,)}, (0,))
    with pytest.raises(EdgeIntelError, match="no Ray cluster answers there"):
        sweep(scenario, g, ray_address="127.0.0.1:1")
    with pytest.raises(ConfigError, match="expected auto, local or host:port"):
        sweep(scenario, g, ray_address="nonsense")
