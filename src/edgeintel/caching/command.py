"""``edgeintel cache-sim``: miss ratio of every replacement policy (and OPT) on a trace file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeintel.caching.policies import POLICIES, miss_ratio
from edgeintel.errors import ConfigError, DataError

__all__ = ["MAX_CAPACITY", "read_trace", "simulate_trace_file"]

#: the largest --capacity accepted (entries)
MAX_CAPACITY = 10**9


def read_trace(path: Path) -> list[str]:
    """Keys of a trace file: one request per line (first comma-separated field), '#' comments."""
    if not path.is_file():
        raise DataError(f"{path}: trace file not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text file (one key per line expected)") from None
    keys = [ln.split(",")[0].strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    if not keys:
        raise DataError(f"{path}: the trace is empty; give one key per line")
    return keys


def simulate_trace_file(
    path: Path, capacity: int, policies: list[str] | None = None
) -> dict[str, float]:
    """Miss ratio per policy (default: all registered) and Belady's OPT on ``path``."""
    if not 1 <= capacity <= MAX_CAPACITY:
        raise ConfigError(
            f"--capacity: expected a number of entries in 1..{MAX_CAPACITY:,}, got {capacity}"
        )
    names = policies or POLICIES.names()
    for n in names:
        POLICIES.get(n)
    keys = read_trace(path)
    distinct, ids = np.unique(np.array(keys), return_inverse=True)
    # a cache that holds every distinct key never evicts: same miss ratios, bounded memory
    capacity = min(capacity, len(distinct))
    return {n: miss_ratio(n, ids, capacity) for n in [*names, "opt"]}
