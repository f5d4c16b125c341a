"""Where a run or benchmark ran: machine facts and library versions, for results files."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from edgeintel.cpu import ISA_FLAGS, cpu_facts

__all__ = ["DEFAULT_PACKAGES", "ISA_FLAGS", "cpu_facts", "machine_info", "package_versions"]

DEFAULT_PACKAGES = ("edgeintel", "numpy", "torch", "onnx", "onnxruntime", "scikit-learn")


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
