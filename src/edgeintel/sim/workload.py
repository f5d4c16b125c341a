"""The scenario's own workload for the simulator: what one task costs and carries.

A simulated task costs ``task_ms`` at compute speed 1.0 (this machine), sends
``input_bytes`` up, gets ``result_bytes`` back, and the redundancy filter skips
``skip_probability`` of tasks. Those four figures come, in this order, from what
the user set (``settings.sim`` or ``--set``), from a run of the scenario
(``edgeintel simulate --from-run RUN``: its ``results.json``), or from the
scenario's model measured on this machine (``commands.simulate``); the generic
values of ``GENERIC`` are used only where nothing else is known, and every
figure says where it came from (``Workload.sources``, shown in the report).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from edgeintel.errors import ConfigError

__all__ = ["FIELDS", "GENERIC", "Workload", "workload_from_results"]

FIELDS = ("task_ms", "input_bytes", "result_bytes", "skip_probability")
GENERIC: dict[str, float] = {
    "task_ms": 20.0,
    "input_bytes": 20_000,
    "result_bytes": 200,
    "skip_probability": 0.2,
}
"""Generic figures (a mid-size vision task), used only for what nothing else gives."""
FLOAT32_BYTES = 4


@dataclass(frozen=True)
class Workload:
    """Measured figures of a task (``None``: not known from this source) and their sources."""

    task_ms: float | None = None
    input_bytes: int | None = None
    result_bytes: int | None = None
    skip_probability: float | None = None
    sources: dict[str, str] = field(default_factory=dict)

    def values(self) -> dict[str, float]:
        """The known figures by ``SimSettings`` field name."""
        return {k: v for k in FIELDS if (v := getattr(self, k)) is not None}


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and math.isfinite(x) and x > 0 else None


def _tensor_bytes(shape: Any) -> int | None:
    if not isinstance(shape, list | tuple) or not shape:
        return None
    dims = [d for d in shape if isinstance(d, int) and d > 0]
    return FLOAT32_BYTES * math.prod(dims) if len(dims) == len(shape) else None


def workload_from_results(results: dict[str, Any], where: str) -> Workload:
    """The task's figures recorded by a run (``results.json`` as a dict; ``where`` names it).

    * ``task_ms``: the offloading stage's profile of the whole model on this machine
      (``offloading.model.full_ms_here``), else the caching stage's model p50;
    * bytes: what the runtime's links carried per inference request and response, else
      the model's input and output tensors (float32);
    * ``skip_probability``: the caching stage's real filter over every device's inputs.
    """
    vals: dict[str, Any] = {}
    src: dict[str, str] = {}
    off = (results.get("offloading") or {}).get("model") or {}
    cach = results.get("caching") or {}
    for value, how in (
        (_num(off.get("full_ms_here")), "the offloading profile of the whole model"),
        (_num(cach.get("model_p50_ms_here")), "the caching stage's model p50"),
    ):
        if value is not None:
            vals["task_ms"], src["task_ms"] = value, f"{how} in {where}"
            break
    infer = [0, 0, 0]
    for link in ((results.get("runtime") or {}).get("links") or {}).values():
        row = (link.get("by_endpoint") or {}).get("infer") or {}
        infer[0] += int(row.get("requests", 0))
        infer[1] += int(row.get("bytes_up", 0))
        infer[2] += int(row.get("bytes_down", 0))
    onnx = (results.get("model") or {}).get("onnx") or {}
    if infer[0] > 0:
        vals["input_bytes"] = max(1, round(infer[1] / infer[0]))
        vals["result_bytes"] = max(1, round(infer[2] / infer[0]))
        how = f"bytes per inference request and response on the runtime's links in {where}"
        src["input_bytes"] = src["result_bytes"] = how
    else:
        inp = _tensor_bytes(onnx.get("input_shape"))
        out = _tensor_bytes(onnx.get("output_shape"))
        if out is None and isinstance(onnx.get("labels"), list) and onnx["labels"]:
            out = FLOAT32_BYTES * len(onnx["labels"])
        if inp is not None:
            vals["input_bytes"] = inp
            src["input_bytes"] = f"the model's float32 input {onnx['input_shape']} in {where}"
        if out is not None:
            vals["result_bytes"] = out
            src["result_bytes"] = f"the model's float32 output in {where}"
    filt = cach.get("filter") or {}
    per_device = filt.get("per_device") or {}
    if not isinstance(per_device, dict):
        raise ConfigError(f"{where}: caching.filter.per_device must be an object of devices")
    counts = []
    for name, row in per_device.items():
        for key in ("inputs", "skipped"):
            if not isinstance(row, dict) or key not in row:
                raise ConfigError(f"{where}: caching.filter.per_device.{name}.{key} is missing")
            if isinstance(row[key], bool) or not isinstance(row[key], int):
                raise ConfigError(
                    f"{where}: caching.filter.per_device.{name}.{key} must be an integer, "
                    f"got {row[key]!r}"
                )
        counts.append((row["inputs"], row["skipped"]))
    inputs, skipped = sum(n for n, _ in counts), sum(k for _, k in counts)
    for n, k in counts:
        if not 0 <= k <= n:
            raise ConfigError(
                f"{where}: caching.filter.per_device.skipped must be an integer in [0, inputs "
                f"({n})], got {k}"
            )
    if inputs > 0:
        vals["skip_probability"] = min(skipped / inputs, 0.999)
        src["skip_probability"] = (
            f"measured by the caching filter in {where} ({skipped}/{inputs} inputs skipped)"
        )
    if not vals:
        raise ConfigError(
            f"{where}: the run records no workload (offloading.model, caching.filter, "
            "model.onnx or runtime.links); run its offloading and caching stages first"
        )
    return Workload(**vals, sources=src)
