"""The cost model against hand-computed cases."""

from __future__ import annotations

import math

import pytest

from edgeintel.errors import ConfigError
from edgeintel.offloading.costs import (
    Breakdown,
    LinkState,
    Power,
    breakdown,
    device_energy_j,
    erlang_c,
    mmc_wait_ms,
    objective_value,
    transfer_ms,
)


def test_transfer_time_is_bits_over_bandwidth() -> None:
    # 1,000,000 B = 8 Mbit; at 8 Mbit/s that is 1 s
    assert transfer_ms(1_000_000, 8.0) == pytest.approx(1000.0)
    assert transfer_ms(12_500, 100.0) == pytest.approx(1.0)
    assert transfer_ms(0, 0.0) == 0.0
    with pytest.raises(ConfigError, match="bandwidth"):
        transfer_ms(10, 0.0)
    with pytest.raises(ConfigError, match="bandwidth"):
        LinkState(-1.0)


def test_erlang_c_and_mmc_wait_by_hand() -> None:
    # M/M/2 with a = 1 Erlang: C = (a^2/2! * 2/(2-1)) / (1 + a + a^2/2! * 2/(2-1)) = 1/3
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    # M/M/1: C = rho; Wq = rho / (1 - rho) * s: rho = 50 Hz * 10 ms = 0.5 -> 10 ms
    assert erlang_c(1, 0.5) == pytest.approx(0.5)
    assert mmc_wait_ms(50.0, 10.0, 1) == pytest.approx(10.0)
    # M/M/2, lambda = 100 Hz, s = 10 ms: a = 1, Wq = C * s / (c - a) = 1/3 * 10 / 1
    assert mmc_wait_ms(100.0, 10.0, 2) == pytest.approx(10 / 3)
    assert mmc_wait_ms(300.0, 10.0, 2) == math.inf
    assert mmc_wait_ms(0.0, 10.0, 2) == 0.0


def test_latency_and_energy_of_a_split_by_hand() -> None:
    link = LinkState(uplink_mbps=10.0, rtt_ms=20.0, downlink_mbps=40.0)
    # 50 KB up at 10 Mbit/s = 40 ms; 1 KB down at 40 Mbit/s = 0.2 ms
    b = breakdown(30.0, 50_000, 1_000, 5.0, link, queue_ms=4.0, serialize_ms=1.0)
    assert b.uplink_ms == pytest.approx(40.0)
    assert b.downlink_ms == pytest.approx(0.2)
    assert b.latency_ms == pytest.approx(30 + 1 + 40 + 20 + 4 + 5 + 0.2)
    assert b.waiting_ms == pytest.approx(20 + 4 + 5 + 0.2)
    p = Power(compute_w=2.0, tx_w=1.5, idle_w=0.5)
    # 2 W * 31 ms + 1.5 W * 40 ms + 0.5 W * 29.2 ms = 62 + 60 + 14.6 = 136.6 mJ
    assert device_energy_j(b, p) == pytest.approx(0.1366)
    assert objective_value(b, p, "latency") == pytest.approx(100.2)
    assert objective_value(b, p, "energy") == pytest.approx(0.1366)
    w = objective_value(b, p, "weighted", 0.25, ref_latency_ms=200.0, ref_energy_j=0.2)
    assert w == pytest.approx(0.25 * 100.2 / 200 + 0.75 * 0.1366 / 0.2)


def test_local_execution_has_no_network_terms() -> None:
    b = breakdown(12.0, 0, 0, 0.0, None)
    assert b == Breakdown(device_ms=12.0)
    assert device_energy_j(b, Power(3.0, 1.0, 1.0)) == pytest.approx(0.036)
