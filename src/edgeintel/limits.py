"""The memory this process may really use, and a check before allocating.

``memory_limit_bytes()`` is the smallest of: the cgroup's limit (v2 ``memory.max``
minus ``memory.current``, or v1 ``memory.limit_in_bytes`` minus ``usage_in_bytes``),
the address-space limit (``RLIMIT_AS`` minus this process's virtual size), and the
machine's ``MemAvailable`` (else physical memory). Reading ``MemAvailable`` alone
ignores a container's or a shell's limit: a run then allocates for minutes and is
killed instead of failing at once.

``ensure_fits(estimate_bytes, what)`` raises a one-line ``ConfigError`` naming what
would be allocated, the estimate and the limit, before anything is allocated. A
foundation module: standard library only, imported by any layer.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgeintel.errors import ConfigError

__all__ = ["GiB", "ensure_fits", "format_bytes", "memory_limit_bytes"]

GiB = 2**30

_CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read_int(path: Path) -> int | None:
    """The integer in ``path`` (``max`` or an unreadable file: ``None``)."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _cgroup_dir() -> tuple[Path, Path] | None:
    """This process's (v2 cgroup folder, v1 memory cgroup folder) from /proc/self/cgroup."""
    try:
        lines = Path("/proc/self/cgroup").read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    v2 = v1 = None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        rel = rel.lstrip("/")
        if controllers == "":
            v2 = _CGROUP_ROOT / rel
        elif "memory" in controllers.split(","):
            v1 = _CGROUP_ROOT / "memory" / rel
    return (v2 or _CGROUP_ROOT, v1 or _CGROUP_ROOT / "memory")


def _cgroup_headroom() -> int | None:
    """Bytes left under the cgroup memory limit (the tightest of this cgroup and its
    parents, v2 or v1); ``None`` when there is no limit or it cannot be read."""
    dirs = _cgroup_dir()
    if dirs is None:
        return None
    v2, v1 = dirs
    best: int | None = None
    for d in (v2, *v2.parents):  # v2: a parent's limit applies too
        if not d.is_relative_to(_CGROUP_ROOT):
            break
        limit = _read_int(d / "memory.max")
        if limit is not None:
            used = _read_int(d / "memory.current") or 0
            left = max(0, limit - used)
            best = left if best is None else min(best, left)
    for d in (v1, *v1.parents):  # v1: likewise, below the memory hierarchy's root
        if not d.is_relative_to(_CGROUP_ROOT / "memory"):
            break
        limit = _read_int(d / "memory.limit_in_bytes")
        if limit is not None and limit < 2**60:  # v1 writes a huge number for "none"
            used = _read_int(d / "memory.usage_in_bytes") or 0
            left = max(0, limit - used)
            best = left if best is None else min(best, left)
    return best


def _address_space_headroom() -> int | None:
    """Bytes left under ``RLIMIT_AS`` (virtual size so far subtracted); ``None``: no limit."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY or soft < 0:
        return None
    used = 0
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmSize:"):
                used = int(line.split()[1]) * 1024
                break
    except (OSError, UnicodeDecodeError, ValueError):
        pass
    return max(0, soft - used)


def _available() -> int:
    """The machine's ``MemAvailable`` (else physical memory; else 16 GiB)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 16 * GiB


def memory_limit_bytes() -> int:
    """Bytes this process can still allocate: the smallest of the cgroup headroom,
    the ``RLIMIT_AS`` headroom and ``MemAvailable``."""
    found = [_available(), _cgroup_headroom(), _address_space_headroom()]
    return min(v for v in found if v is not None)


def format_bytes(n: float) -> str:
    """``1.5 GiB``, ``12.0 MiB``, ``512 B``: a size for a message."""
    for unit, size in (("TiB", 2**40), ("GiB", GiB), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


def ensure_fits(estimate_bytes: float, what: str, hint: str = "") -> None:
    """Raise ``ConfigError`` (one line) when ``estimate_bytes`` exceeds what this process
    may allocate; ``what`` names the thing (``"sim: 3000000 devices x 600 s"``), ``hint``
    what to lower. Call it before allocating."""
    limit = memory_limit_bytes()
    if estimate_bytes > limit:
        tail = f": {hint}" if hint else ""
        raise ConfigError(
            f"{what} needs an estimated {format_bytes(estimate_bytes)}; "
            f"{format_bytes(limit)} is available{tail}"
        )
