"""``edgeintel cache-sim``: miss ratio of every replacement policy (and OPT) on a trace file.

The trace is read once into dense integer ids and replayed on libCacheSim itself
for the policies it has (``policies.miss_ratios``), on ours for the rest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeintel.caching.policies import POLICIES, miss_ratios
from edgeintel.errors import ConfigError, DataError
from edgeintel.limits import ensure_fits

__all__ = ["read_trace", "simulate_trace_file"]


def read_trace(path: Path) -> np.ndarray:
    """The keys of a trace file as int64 ids (decimal keys as themselves, others 1, 2, ...).

    One request per line: the key is the line's first comma-separated field,
    stripped; blank lines and lines starting with '#' are skipped. Keys are
    strings: "01" and "1" are different keys.
    """
    if not path.is_file():
        raise DataError(f"{path}: trace file not found")
    data = path.read_bytes()
    numeric = (
        not data.translate(None, b"0123456789\n")
        and b"\n\n" not in data
        and b"\n0" not in data
        and not data.startswith((b"0", b"\n"))
    )
    if numeric and data:
        try:  # the common case, parsed in C: decimal ids, one a line, no leading zeros
            return np.array(data.split(), dtype=np.int64)
        except (OverflowError, ValueError):
            pass
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text file (one key per line expected)") from None
    keys = [ln.split(",")[0].strip() for ln in text.split("\n") if not ln.startswith("#")]
    keys = [k for k in keys if k]
    if not keys:
        raise DataError(f"{path}: the trace is empty; give one key per line")
    ids: dict[str, int] = {}
    setdefault = ids.setdefault
    return np.array([setdefault(k, len(ids) + 1) for k in keys], dtype=np.int64)


def simulate_trace_file(
    path: Path, capacity: int, policies: list[str] | None = None, opt: bool = True
) -> dict[str, float]:
    """Miss ratio per policy (default: all registered) and, with ``opt``, Belady's OPT."""
    if capacity < 1:
        raise ConfigError(f"--capacity must be a positive number of entries, got {capacity}")
    names = policies or POLICIES.names()
    for n in names:
        POLICIES.get(n)
    ids = read_trace(path)
    # the policies' tables grow with the entries held, never more than the trace's requests,
    # so a larger capacity (``--capacity 1e20``) gives the same ratios and no allocation
    # (bounding by the requests, not the distinct keys, spares a sort of the whole trace)
    held = min(capacity, int(ids.size))
    ensure_fits(64.0 * ids.size + 256.0 * held, f"cache-sim: {ids.size} requests of {path}")
    return miss_ratios(ids, held, [*names, "opt"] if opt else names)
