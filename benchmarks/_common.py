"""Shared helpers for benchmark scripts: the common results-file format."""

from __future__ import annotations

import json
import operator
import os
import platform
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

__all__ = ["RESULTS_DIR", "target", "write_results"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"

_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


def target(name: str, value: float, op: str, goal: float, unit: str) -> dict[str, Any]:
    """One figure an issue asks for: ``value`` compared with ``goal`` by ``op`` (e.g. ">=")."""
    return {
        "name": name,
        "value": round(float(value), 6),
        "goal": f"{op} {goal:g}",
        "unit": unit,
        "met": bool(_OPS[op](value, goal)),
    }


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("edgeintel", "numpy", "torch", "onnx", "onnxruntime", "flwr", "scikit-learn"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


def write_results(
    area: str, targets: list[dict[str, Any]], details: dict[str, Any] | None = None
) -> Path:
    """Write ``benchmarks/results/<area>.json`` and print a one-line verdict per target."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    data = {
        "area": area,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "versions": _versions(),
        "targets": targets,
        "details": details or {},
    }
    path = RESULTS_DIR / f"{area}.json"
    path.write_text(json.dumps(data, indent=2, default=str))
    for t in targets:
        mark = "MET " if t["met"] else "MISS"
        print(f"[{mark}] {t['name']}: {t['value']:g} {t['unit']} (goal {t['goal']})")
    print(f"wrote {path}")
    return path
