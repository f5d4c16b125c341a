"""Where a run or benchmark ran: machine facts and library versions, for results files."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_PACKAGES", "ISA_FLAGS", "cpu_facts", "machine_info", "package_versions"]

DEFAULT_PACKAGES = ("edgeintel", "numpy", "torch", "onnx", "onnxruntime", "scikit-learn")

#: CPU features that change what int8 / fp32 kernels ONNX Runtime and PyTorch can use.
ISA_FLAGS = (
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "amx_int8",
    "neon",
    "asimd",
)


def cpu_facts(cpuinfo: str | None = None) -> dict[str, Any]:
    """CPU model name and the ``ISA_FLAGS`` it has, from ``/proc/cpuinfo`` (Linux).

    ``cpuinfo`` is the file's text (read from the system when ``None``); on
    other systems the model falls back to ``platform.processor()`` and the
    flags are unknown (``None``).
    """
    if cpuinfo is None:
        p = Path("/proc/cpuinfo")
        try:
            cpuinfo = p.read_text(encoding="utf-8", errors="replace") if p.exists() else ""
        except OSError:
            cpuinfo = ""
    model = None
    flags: set[str] | None = None
    for line in cpuinfo.splitlines():
        key, _, val = line.partition(":")
        key = key.strip().lower()
        if model is None and key in ("model name", "hardware", "cpu model"):
            model = val.strip()
        elif flags is None and key in ("flags", "features"):
            flags = set(val.split())
    return {
        "cpu_model": model or platform.processor() or platform.machine(),
        "isa": None if flags is None else [f for f in ISA_FLAGS if f in flags],
    }


def machine_info() -> dict[str, Any]:
    """Platform, CPU model and ISA flags, CPU count, 1-min load average and Python version."""
    try:
        load: float | None = round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        load = None
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        **cpu_facts(),
        "cpus": os.cpu_count(),
        "load_1min": load,
        "python": platform.python_version(),
    }


def package_versions(packages: Sequence[str] = DEFAULT_PACKAGES) -> dict[str, str]:
    """Installed versions of ``packages`` (those not installed are left out)."""
    out = {}
    for pkg in packages:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out
