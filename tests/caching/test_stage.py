"""The caching stage on a tiny scenario, and bad caching settings at the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from edgeintel.cli import app
from edgeintel.pipeline import run_pipeline
from edgeintel.scenario import parse_scenario

from ..conftest import tiny_scenario_dict


@pytest.mark.slow
def test_caching_stage_writes_its_section(tmp_path: Path) -> None:
    d = tiny_scenario_dict()
    d["edge_servers"].append({"name": "micro-2", "kind": "micro", "cache_mb": 300})
    d["links"].append({"between": ["micro-2", "cloud"], "bandwidth_mbps": 100, "rtt_ms": 20})
    d["links"].append({"between": ["micro-1", "micro-2"], "bandwidth_mbps": 1000, "rtt_ms": 2})
    d["device_profiles"]["cam"] = {**d["device_profiles"]["phone"], "cache_mb": 50}
    d["devices"].append({"name": "cam", "count": 2, "profile": "cam", "attach": "micro-2"})
    d["settings"]["caching"] = {
        "filter": {"max_devices": 2},
        "result_cache": {"requests": 400},
        "placement": {"items": 300, "requests": 1000},
    }
    sc = parse_scenario(d)
    res = run_pipeline(
        sc,
        runs_dir=tmp_path,
        run_id="c",
        console=Console(quiet=True),
        stages=["data", "train", "export", "evaluate", "caching"],
        show_progress=False,
    )
    c = res.results["caching"]
    devs = c["filter"]["per_device"]
    assert len(devs) == 2
    for v in devs.values():
        assert 0 <= v["skip_fraction"] <= 1 and v["skipped"] <= v["inputs"]
        assert v["bytes_not_uploaded"] == v["skipped"] * 8 * 8 * 4  # 1x8x8 float32 digits
        assert "agreement" in v["threshold"]["reason"]
    servers = c["result_cache"]["per_server"]
    assert set(servers) == {"micro-1", "micro-2"}
    assert servers["micro-1"]["devices"] == 4 and servers["micro-2"]["devices"] == 2
    for v in servers.values():
        assert v["requests"] == 400 and 0 <= v["cache"]["hit_ratio"] <= 1
    pol = c["policies"]["miss_ratio"]
    assert all(pol["opt"] <= m + 1e-12 for m in pol.values())
    pl = c["placement"]
    assert pl["stations"]["micro-1"]["items"] <= 1024 // 10
    assert pl["stations"]["micro-2"]["items"] <= 300 // 10
    assert pl["neighbours"]["micro-1"] == ["micro-2"]
    assert 0 <= pl["greedy_gap_to_lp"] <= 0.5
    # the device tier: only the two cams have a cache (50 MiB / 10 MiB items = 5 slots)
    tier = pl["device_tier"]
    assert tier["devices_with_cache"] == 2 and set(tier["device_items"]) == {"cam-0", "cam-1"}
    assert all(0 < n <= 5 for n in tier["device_items"].values())
    t, coop = tier["tiered_cooperative"], pl["cooperative_greedy"]
    assert t["requests"] == coop["requests"]  # the same held-out requests, split by device
    ratios = ("device_hit_ratio", "local_hit_ratio", "neighbour_hit_ratio", "cloud_ratio")
    assert sum(t[k] for k in ratios) == pytest.approx(1.0, abs=1e-3)
    assert t["device_hit_ratio"] > 0
    assert "hit ratio per tier (devices + cooperative)" in c["summary"]
    assert "threshold chosen (first device)" in c["summary"]


@pytest.mark.parametrize(
    ("caching", "message"),
    [
        ({"filter": {"target": 1.5}}, "settings.caching.filter.target"),
        ({"filter": {"target": 0}}, "settings.caching.filter.target"),
        ({"result_cache": {"capacity": 0}}, "settings.caching.result_cache.capacity"),
        ({"result_cache": {"policy": "mru"}}, "unknown cache policy 'mru'"),
        ({"policies": ["lru", "nope"]}, "unknown cache policy 'nope'"),
        ({"filter": {"features": ["colour"]}}, "unknown difference feature 'colour'"),
        ({"result_cache": {"k": 2, "min_votes": 3}}, "min_votes (3) cannot exceed k (2)"),
        ({"result_cache": {"backend": "memcached"}}, "settings.caching.result_cache.backend"),
        ({"result_cache": {"redis_url": "http://x:1"}}, "redis_url must start with redis://"),
        ({"result_cache": {"redis_url": "redis://h:x/0"}}, "has an invalid port"),
        ({"placement": {"device_ms": 9, "local_ms": 5}}, "device_ms <= local_ms"),
    ],
)
def test_bad_caching_settings_exit_2(tmp_path: Path, caching: dict, message: str) -> None:
    d = tiny_scenario_dict()
    d["settings"]["caching"] = caching
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(d))
    res = CliRunner().invoke(app, ["validate", str(p)])
    assert res.exit_code == 2
    assert message in res.output
    assert "Traceback" not in res.output


def test_cache_sim_cli(tmp_path: Path) -> None:
    p = tmp_path / "trace.txt"
    p.write_text("# key\n" + "\n".join("abacbadab"))
    res = CliRunner().invoke(app, ["cache-sim", str(p), "--capacity", "2", "--policy", "lru"])
    assert res.exit_code == 0, res.output
    assert "lru" in res.output and "opt" in res.output
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    for args, msg in [
        ([str(empty), "--capacity", "2"], "the trace is empty"),
        ([str(p), "--capacity", "0"], "--capacity must be a positive number"),
        ([str(p), "--capacity", "2", "--policy", "mru"], "unknown cache policy 'mru'"),
        ([str(tmp_path / "nope.txt"), "--capacity", "2"], "trace file not found"),
    ]:
        res = CliRunner().invoke(app, ["cache-sim", *args])
        assert res.exit_code == 2, args
        assert msg in res.output and "Traceback" not in res.output
        assert len(res.output.strip().splitlines()) == 1


def test_report_shows_the_hit_ratio_per_placement_tier() -> None:
    import edgeintel.pipeline.sections  # noqa: F401  (registers the caching section's renderer)
    from edgeintel.report.sections import SECTIONS, RenderContext

    rep = {
        "requests": 1000,
        "local_hit_ratio": 0.4,
        "neighbour_hit_ratio": 0.1,
        "cloud_ratio": 0.5,
        "mean_latency_ms": 54.0,
        "backhaul_bytes": 500 * 2**20,
    }
    data = {
        "placement": {
            "cooperative_greedy": rep,
            "single_bs_popularity": {**rep, "neighbour_hit_ratio": 0.0, "cloud_ratio": 0.6},
            "device_tier": {
                "devices_with_cache": 2,
                "device_items": {"cam-0": 5, "cam-1": 4},
                "device_ms": 0.0,
                "tiered_cooperative": {**rep, "device_hit_ratio": 0.1234, "cloud_ratio": 0.3766},
            },
        }
    }
    html = str(SECTIONS.get("caching").render(data, [], RenderContext({"caching": data})))
    assert "devices + cooperative greedy" in html and "device hit ratio" in html
    assert "0.1234" in html and "station hit ratio" in html
    assert "items cached on 2 devices" in html and "cam-1" in html


def test_device_stream_windows_recordings_only() -> None:
    """A time series's recordings become windows of one joined signal; tabular readings
    (also (N, 1, F)) and every other modality stay one sample per input, whole."""
    from edgeintel.data.datasets import Modality
    from edgeintel.pipeline.stages.caching_stage import _device_stream

    x = np.arange(3 * 1 * 8, dtype=np.float32).reshape(3, 1, 8)
    windows = _device_stream(x, Modality.TIMESERIES)
    assert windows.shape == (9, 1, 8)  # 24 readings, windows of 8 every 2
    np.testing.assert_array_equal(windows[1, 0], np.arange(2, 10))  # across a record's end
    for modality in (Modality.TABULAR, Modality.AUDIO):
        np.testing.assert_array_equal(_device_stream(x, modality), x)


def test_filter_cost_is_timed_on_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Device speeds are relative to one thread of this machine: the filter's cost is timed
    on one whatever ``settings.threads`` the stage runs under."""
    import torch

    from edgeintel.caching import filter_cost
    from edgeintel.caching.filter_cost import filter_cost_ms
    from edgeintel.latency import LatencyStats
    from edgeintel.threads import thread_limit

    seen: list[int] = []

    def fake_time_calls(call: object, runs: int, warmup: int, **kw: object) -> LatencyStats:
        seen.append(torch.get_num_threads())
        return LatencyStats(p50_ms=1.0, p95_ms=1.0, mean_ms=1.0, runs=5)

    monkeypatch.setattr(filter_cost, "time_calls", fake_time_calls)
    xs = np.random.default_rng(0).random((8, 1, 8, 8)).astype(np.float32)
    with thread_limit(2):
        ms = filter_cost_ms(xs, "pixel")
        assert torch.get_num_threads() == 2  # restored after the timing
    assert seen == [1] and ms == pytest.approx(1.0 / 7)
