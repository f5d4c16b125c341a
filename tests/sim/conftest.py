"""Small scenarios for the simulator's tests."""

from __future__ import annotations

from typing import Any

from edgeintel.scenario import Scenario, parse_scenario

from ..conftest import tiny_scenario_dict


def hand_scenario(backhaul_mbps: float = 100) -> Scenario:
    """One micro station ``bs`` (compute speed 0.5, one worker), two devices in groups with
    RTT 2 ms and 4 ms on 8 Mbit/s links, a 16 Mbit/s cell: numbers easy to work by hand."""
    raw: dict[str, Any] = tiny_scenario_dict()
    raw["edge_servers"] = [{"name": "bs", "kind": "micro", "compute_speed": 0.5}]
    raw["device_profiles"]["phone"]["compute_speed"] = 0.5
    raw["devices"] = [
        {
            "name": "a",
            "count": 1,
            "profile": "phone",
            "attach": "bs",
            "link": {"bandwidth_mbps": 8, "rtt_ms": 2},
        },
        {
            "name": "b",
            "count": 1,
            "profile": "phone",
            "attach": "bs",
            "link": {"bandwidth_mbps": 8, "rtt_ms": 4},
        },
    ]
    raw["links"] = [{"between": ["bs", "cloud"], "bandwidth_mbps": backhaul_mbps, "rtt_ms": 10}]
    raw["settings"]["offloading"] = {"server_workers": 1}
    raw["settings"]["sim"] = {
        "duration_s": 1.0,
        "decisions": "task",
        "filter": False,
        "task_ms": 10.0,
        "input_bytes": 10_000,
        "result_bytes": 1_000,
        "micro_uplink_mbps": 16,
        "max_batch": 2,
        "batch_marginal": 0.5,
        "cache_entries": 10,
        "series_bins": 4,
        "traces": {"speed_sigma": 0, "bandwidth_sigma": 0},
        "mobility": {"handover_rate_hz": 0},
    }
    return parse_scenario(raw)


def busy_scenario() -> Scenario:
    """Everything on: two stations, loss, a backhaul with congestion and an outage, a device
    link trace, availability off periods, handovers, federated rounds, small caches."""
    raw: dict[str, Any] = tiny_scenario_dict()
    raw["device_profiles"]["tablet"] = {
        **raw["device_profiles"]["phone"],
        "compute_speed": 4.0,
        "battery_j": 2,
    }
    raw["edge_servers"] = [
        {"name": "macro", "kind": "macro", "compute_speed": 2.0},
        {"name": "micro", "kind": "micro", "compute_speed": 0.5},
    ]
    raw["devices"] = [
        {
            "name": "phone",
            "count": 6,
            "profile": "phone",
            "attach": "micro",
            "link": {
                "bandwidth_mbps": 30,
                "rtt_ms": 12,
                "loss": 0.05,
                "trace": [{"t_s": 0, "bandwidth_mbps": 30}, {"t_s": 20, "bandwidth_mbps": 5}],
            },
        },
        {
            "name": "cam",
            "count": 4,
            "profile": "phone",
            "attach": "macro",
            "link": {"bandwidth_mbps": 50, "rtt_ms": 6},
        },
        {"name": "far", "count": 2, "profile": "tablet", "attach": "cloud"},
    ]
    raw["links"] = [
        {"between": ["micro", "macro"], "bandwidth_mbps": 200, "rtt_ms": 2},
        {
            "between": ["macro", "cloud"],
            "bandwidth_mbps": 100,
            "rtt_ms": 30,
            "trace": [
                {"t_s": 0, "bandwidth_mbps": 100},
                {"t_s": 15, "bandwidth_mbps": 10, "rtt_ms": 60},
                {"t_s": 25, "bandwidth_mbps": 0},
                {"t_s": 30, "bandwidth_mbps": 100, "rtt_ms": 30},
            ],
        },
    ]
    raw["settings"]["offloading"] = {"server_workers": 1, "cloud_workers": 3, "request_rate_hz": 8}
    raw["settings"]["sim"] = {
        "duration_s": 40.0,
        "task_ms": 60.0,
        "cache_entries": 20,
        "catalog": 200,
        "max_batch": 2,
        "queue_limit": 30,
        "series_bins": 400,
        "traces": {"mean_on_s": 15, "mean_off_s": 5},
        "mobility": {"handover_rate_hz": 0.05, "follow_entries": 4},
        "federated": {"enabled": True, "round_interval_s": 10, "clients_per_round": 4},
    }
    return parse_scenario(raw)
