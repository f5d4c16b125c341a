"""Shared helpers for benchmark scripts: the common results-file format."""

from __future__ import annotations

import json
import operator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgeintel.report.environment import DEFAULT_PACKAGES, machine_info, package_versions

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


def write_results(
    area: str, targets: list[dict[str, Any]], details: dict[str, Any] | None = None
) -> Path:
    """Write ``benchmarks/results/<area>.json`` and print a one-line verdict per target."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    data = {
        "area": area,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": package_versions((*DEFAULT_PACKAGES, "flwr")),
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
