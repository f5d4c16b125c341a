"""Timing users can trust: windows repeated until they agree, percentiles, machine record."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edgeintel.errors import ConfigError
from edgeintel.latency import scale_latency, time_calls, windows_agree
from edgeintel.report.environment import cpu_facts


def test_windows_agree_by_hand() -> None:
    assert windows_agree([1.0, 1.1, 0.95], 0.15)  # all within 15 % of the median 1.0
    assert not windows_agree([1.0, 1.2, 0.95], 0.15)  # 1.2 is 20 % above the median
    assert not windows_agree([], 0.1)


def test_time_calls_repeats_until_windows_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake clock: the first windows are slow (2 ms per call), later ones settle at 1 ms,
    so the measurement keeps going until the last three windows agree."""
    per_call = itertools.chain([2.0] * 10, [1.5] * 5, itertools.repeat(1.0))
    now = [0.0]

    def call() -> None:
        now[0] += next(per_call) / 1000.0

    monkeypatch.setattr("edgeintel.latency.time.perf_counter", lambda: now[0])
    st = time_calls(call, runs=5, warmup=0, windows=3, tolerance=0.1)
    # windows: 2, 2, 1.5, 1, 1, 1 ms -> the last three agree after the 6th window
    assert st.windows == 6 and st.stable is True and st.runs == 15
    assert st.p50_ms == pytest.approx(1.0) and st.p99_ms == pytest.approx(1.0)
    assert st.throughput_per_s == pytest.approx(1000.0)
    assert len(st.samples_ms) == 15 and "samples_ms" not in st.to_json()


def test_time_calls_gives_up_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    per_call = itertools.cycle([1.0] * 4 + [3.0] * 4)  # alternating windows never agree
    now = [0.0]

    def call() -> None:
        now[0] += next(per_call) / 1000.0

    monkeypatch.setattr("edgeintel.latency.time.perf_counter", lambda: now[0])
    st = time_calls(call, runs=4, warmup=0, windows=2, tolerance=0.1, max_windows=5)
    assert st.windows == 5 and st.stable is False
    with pytest.raises(ConfigError):
        time_calls(call, runs=4, warmup=0, windows=6, max_windows=5)


def test_single_window_keeps_old_behaviour_and_scaling_is_marked_estimated() -> None:
    st = time_calls(lambda: None, runs=20, warmup=2)
    assert st.runs == 20 and st.windows == 1 and st.stable is None and not st.estimated
    slow = scale_latency(st, 0.25)
    assert slow.estimated and slow.p50_ms == pytest.approx(4 * st.p50_ms)
    assert np.allclose(slow.samples_ms, 4 * np.asarray(st.samples_ms))
    assert not scale_latency(st, 1.0).estimated


def test_cpu_facts_from_cpuinfo() -> None:
    info = "processor : 0\nmodel name : Fancy CPU 9000\nflags : fpu sse avx avx2 fma avx512f\n"
    facts = cpu_facts(info)
    assert facts["cpu_model"] == "Fancy CPU 9000"
    assert facts["isa"] == ["avx", "avx2", "fma", "avx512f"]  # no VNNI on this one
    arm = "processor : 0\nFeatures : fp asimd evtstrm\nHardware : BCM2835\n"
    assert cpu_facts(arm) == {"cpu_model": "BCM2835", "isa": ["asimd"]}
    assert cpu_facts("")["isa"] is None
