"""Shared helpers for benchmark scripts: the common results-file format."""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgeintel.report.environment import DEFAULT_PACKAGES, machine_info, package_versions

__all__ = ["RESULTS_DIR", "mean_std", "target", "wilson_interval", "write_results"]

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


def mean_std(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (ddof 1; 0 for one value) and the values themselves."""
    v = [float(x) for x in values]
    if not v:
        raise ValueError("mean_std of no values")
    mean = sum(v) / len(v)
    std = math.sqrt(sum((x - mean) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return {"mean": round(mean, 6), "std": round(std, 6), "n": len(v), "values": v}


def wilson_interval(correct: int, total: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of an accuracy ``correct / total`` (small test sets)."""
    if total < 1:
        raise ValueError("wilson_interval needs at least one sample")
    p = correct / total
    den = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / den
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / den
    return (round(max(0.0, centre - half), 6), round(min(1.0, centre + half), 6))


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
