"""Scenario schema: shipped files validate, broken files fail with their own one-line message."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from edgeintel import ConfigError, load_scenario, parse_scenario
from edgeintel.cli import app
from edgeintel.scenario import dump_scenario

from .conftest import SCENARIOS, tiny_scenario_dict

SHIPPED = sorted(SCENARIOS.glob("*.yaml"))


def test_every_application_is_shipped() -> None:
    names = {p.stem for p in SHIPPED}
    assert {
        "default",
        "wearable_health",
        "home_energy",
        "smart_camera",
        "mnist_federated",
    } <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_scenarios_validate(path: Path) -> None:
    sc = load_scenario(path)
    assert sc.num_devices == len(sc.expand_devices()) >= 1
    # every edge server reaches the cloud
    for e in sc.edge_servers:
        assert sc.path_to_cloud(e.name)[-1] == sc.cloud.name


def test_round_trip_through_json() -> None:
    sc = load_scenario(SCENARIOS / "default.yaml")
    again = parse_scenario(dump_scenario(sc), base_dir=SCENARIOS)
    assert again == sc


def test_device_groups_expand_and_topology() -> None:
    sc = parse_scenario(tiny_scenario_dict())
    devs = sc.expand_devices()
    assert [d.name for d in devs] == ["phone-0", "phone-1", "phone-2", "phone-3"]
    assert all(d.attach == "micro-1" and d.profile.compute_speed == 0.25 for d in devs)
    assert sc.path_to_cloud("micro-1") == ["micro-1", "cloud"]
    assert sc.link_between("cloud", "micro-1").bandwidth_mbps == 100


def _break(path: tuple[Any, ...], value: Any, delete: bool = False) -> dict[str, Any]:
    sc = copy.deepcopy(tiny_scenario_dict())
    node: Any = sc
    for key in path[:-1]:
        node = node[key]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return sc


BROKEN = {
    "wrong type": (
        _break(("devices", 0, "count"), "many"),
        "devices[0].count: expected an integer, got 'many'",
    ),
    "unknown field": (
        _break(("edge_servers", 0, "cach_mb"), 5),
        "edge_servers[0].cach_mb: unknown field; expected one of: cache_mb",
    ),
    "dangling link": (
        _break(("links", 0, "between"), ["micro-9", "cloud"]),
        "links[0].between: dangling link: unknown node 'micro-9'",
    ),
    "negative bandwidth": (
        _break(("links", 0, "bandwidth_mbps"), -5),
        "links[0].bandwidth_mbps: input should be greater than 0, got -5",
    ),
    "missing file": (_break(("data",), {"path": "nowhere.npz"}), "data.path: file not found"),
    "unknown profile": (
        _break(("devices", 0, "profile"), "toaster"),
        "devices[0].profile: unknown device profile 'toaster'",
    ),
    "bad attach": (
        _break(("devices", 0, "attach"), "moon"),
        "devices[0].attach: unknown node 'moon'",
    ),
    "bad base station kind": (
        _break(("edge_servers", 0, "kind"), "mega"),
        "edge_servers[0].kind: input should be 'macro' or 'micro'",
    ),
    "missing field": (_break(("task",), None, delete=True), "task: required field is missing"),
    "loss out of range": (
        _break(("links", 0, "loss"), 1.5),
        "links[0].loss: input should be less than 1",
    ),
    "isolated edge server": (
        _break(("links",), []),
        "edge_servers[0]: edge server 'micro-1' has no link path to the cloud",
    ),
    "both data sources": (
        _break(("data", "path"), "broken.yaml"),
        "data: give only one of 'dataset' (a bundled dataset) or 'path'",
    ),
    "no data source": (
        _break(("data", "dataset"), None),
        "data: give 'dataset' (a bundled dataset) or 'path'",
    ),
    "budget for unknown profile": (
        _break(
            ("settings", "inference"), {"compress": {"budgets": {"fridge": {"max_model_kb": 9}}}}
        ),
        "settings.inference.compress.budgets.fridge: unknown device profile 'fridge'",
    ),
    "bad trace": (
        _break(
            ("links", 0, "trace"),
            [{"t_s": 5, "bandwidth_mbps": 1}, {"t_s": 2, "bandwidth_mbps": 1}],
        ),
        "links[0].trace: trace times t_s must be strictly increasing",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN), ids=str)
def test_broken_scenarios_fail_with_their_own_message(case: str, tmp_path: Path) -> None:
    raw, expected = BROKEN[case]
    f = tmp_path / "broken.yaml"
    f.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as info:
        load_scenario(f)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{f}: ")
    assert expected in msg, msg


def test_broken_messages_are_distinct(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("")
    msgs = set()
    for raw, _ in BROKEN.values():
        with pytest.raises(ConfigError) as info:
            parse_scenario(raw, base_dir=tmp_path)
        msgs.add(str(info.value))
    assert len(msgs) == len(BROKEN)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: [unclosed", "not valid YAML at line"),
        ("- just\n- a list\n", "expected a mapping of scenario fields"),
    ],
)
def test_unparseable_files(text: str, expected: str, tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=expected):
        load_scenario(f)


def test_cli_validate_exit_codes(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["validate", str(SCENARIOS / "default.yaml")])
    assert ok.exit_code == 0, ok.output
    assert "ok" in ok.output
    raw, _expected = BROKEN["dangling link"]
    f = tmp_path / "broken.yaml"
    f.write_text(yaml.safe_dump(raw))
    bad = runner.invoke(app, ["validate", str(f)])
    assert bad.exit_code == 2
    assert "Traceback" not in bad.output
    missing = runner.invoke(app, ["validate", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2


def test_console_script_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    raw, expected = BROKEN["negative bandwidth"]
    f = tmp_path / "broken.yaml"
    f.write_text(yaml.safe_dump(raw))
    proc = subprocess.run(
        [sys.executable, "-m", "edgeintel.cli", "validate", str(f)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and expected in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_link_trace_inline_and_from_csv(tmp_path: Path) -> None:
    sc = load_scenario(SCENARIOS / "default.yaml")
    backhaul = sc.link_between("macro-1", "cloud")
    assert backhaul.at(10) == (500, 30, 0.0)
    assert backhaul.at(60) == (100, 80, 0.0)
    assert backhaul.at(125)[0] == 0  # outage
    assert backhaul.at(500) == (500, 30, 0.0)
    (tmp_path / "trace.csv").write_text("t_s,bandwidth_mbps,rtt_ms\n0,10,5\n5,2,40\n")
    raw = tiny_scenario_dict()
    raw["links"][0]["trace_file"] = "trace.csv"
    link = parse_scenario(raw, base_dir=tmp_path).links[0]
    assert [p.bandwidth_mbps for p in link.trace_points()] == [10, 2]
    assert link.at(6) == (2, 40, 0.0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("t_s,mbps\n0,1\n", "missing column 'bandwidth_mbps'"),
        ("t_s,bandwidth_mbps\n0,abc\n", "line 2: expected finite non-negative numbers"),
        ("t_s,bandwidth_mbps\n5,1\n1,1\n", "t_s strictly increasing"),
    ],
)
def test_bad_trace_files(text: str, expected: str, tmp_path: Path) -> None:
    (tmp_path / "trace.csv").write_text(text)
    raw = tiny_scenario_dict()
    raw["links"][0]["trace_file"] = "trace.csv"
    with pytest.raises(ConfigError, match=expected) as info:
        parse_scenario(raw, base_dir=tmp_path)
    assert str(info.value).startswith("scenario: links[0].trace_file: ")


def test_readme_example_validates() -> None:
    text = (SCENARIOS.parent / "README.md").read_text()
    start = text.index("```yaml\nname: city-digits") + len("```yaml\n")
    raw = yaml.safe_load(text[start : text.index("```", start)])
    sc = parse_scenario(raw, source="README")
    assert sc.num_devices == 20 and sc.settings.training.secure_aggregation is not None
