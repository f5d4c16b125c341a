"""Where a run or benchmark ran: machine facts and library versions, for results files."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

__all__ = ["DEFAULT_PACKAGES", "machine_info", "package_versions"]

DEFAULT_PACKAGES = ("edgeintel", "numpy", "torch", "onnx", "onnxruntime", "scikit-learn")


def machine_info() -> dict[str, Any]:
    """Platform, processor, CPU count and Python version of this machine."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
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
