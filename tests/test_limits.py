"""edgeintel.limits: the real memory limit (cgroup, RLIMIT_AS, MemAvailable) and ensure_fits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgeintel.errors import ConfigError
from edgeintel.limits import ensure_fits, format_bytes, memory_limit_bytes


def test_limit_is_positive_and_below_physical_memory() -> None:
    import os

    limit = memory_limit_bytes()
    assert 0 < limit <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def test_ensure_fits_refuses_in_one_line_naming_what() -> None:
    ensure_fits(1024, "a tiny table")  # fits
    with pytest.raises(ConfigError) as err:
        ensure_fits(2.0**60, "cache-sim: --capacity 1e20", "lower --capacity")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("cache-sim: --capacity 1e20 needs an estimated 1.05e+06 TiB")
    assert msg.endswith("is available: lower --capacity")


def test_rlimit_as_lowers_the_limit() -> None:
    """A process started under ``ulimit -v`` sees that limit, not the machine's memory."""
    code = (
        "import resource; resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30));"
        "from edgeintel.limits import memory_limit_bytes; print(memory_limit_bytes())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) < 3 * 2**30


@pytest.mark.parametrize(
    ("n", "text"), [(512, "512 B"), (2**20 * 12, "12 MiB"), (1.5 * 2**30, "1.5 GiB")]
)
def test_format_bytes(n: float, text: str) -> None:
    assert format_bytes(n) == text


def test_cache_sim_capacity_beyond_the_trace_allocates_nothing(tmp_path: Path) -> None:
    """``cache-sim --capacity 1e20``: a capacity above the trace's distinct keys holds them
    all, so it is the same run as capacity = distinct keys (no 1e20-entry table)."""
    from edgeintel.caching.command import simulate_trace_file

    trace = tmp_path / "t.txt"
    trace.write_text("\n".join(str(k) for k in [1, 2, 3, 1, 2, 4, 5, 1]) + "\n")
    huge = simulate_trace_file(trace, 10**20, ["lru", "fifo"])
    assert huge == simulate_trace_file(trace, 5, ["lru", "fifo"])
    assert huge["lru"] == pytest.approx(5 / 8)  # compulsory misses only


def test_placement_and_grid_sizes_are_checked_against_memory() -> None:
    from edgeintel.caching.placement import zipf_demand

    with pytest.raises(ConfigError, match=r"caching placement: 100000 stations .* needs an"):
        zipf_demand(100_000, 1_000_000, 0.8, 1_000_000)
