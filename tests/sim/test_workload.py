"""The scenario's own workload taken from a run's results.json (``sim.workload``)."""

from __future__ import annotations

import pytest

from edgeintel.errors import ConfigError
from edgeintel.sim.workload import workload_from_results


def _results(runtime: bool) -> dict:
    out = {
        "offloading": {"model": {"full_ms_here": 3.25}},
        "caching": {
            "model_p50_ms_here": 9.0,  # the offloading profile wins
            "filter": {
                "per_device": {
                    "a": {"inputs": 30, "skipped": 12},
                    "b": {"inputs": 10, "skipped": 2},
                }
            },
        },
        "model": {"onnx": {"input_shape": [6, 50], "labels": ["x", "y", "z"]}},
    }
    if runtime:
        out["runtime"] = {"links": {
            "l1": {"by_endpoint": {"infer": {"requests": 4, "bytes_up": 5000, "bytes_down": 800}}},
            "l2": {"by_endpoint": {"infer": {"requests": 6, "bytes_up": 7000, "bytes_down": 1200}}},
        }}  # fmt: skip
    return out


def test_figures_and_their_sources() -> None:
    w = workload_from_results(_results(runtime=True), "run R")
    assert w.values() == {"task_ms": 3.25, "input_bytes": 1200, "result_bytes": 200,
                          "skip_probability": 14 / 40}  # fmt: skip
    assert "offloading profile" in w.sources["task_ms"] and "run R" in w.sources["task_ms"]
    assert "runtime's links" in w.sources["input_bytes"]
    assert "14/40 inputs skipped" in w.sources["skip_probability"]


def test_tensor_sizes_without_a_deployed_runtime() -> None:
    w = workload_from_results(_results(runtime=False), "run R")
    assert (w.input_bytes, w.result_bytes) == (4 * 6 * 50, 4 * 3)
    assert "float32 input [6, 50]" in w.sources["input_bytes"]


def test_a_run_without_a_workload_is_one_line() -> None:
    with pytest.raises(ConfigError, match="records no workload"):
        workload_from_results({"run_id": "x"}, "run R")
    bad = _results(runtime=False)
    bad["caching"]["filter"]["per_device"]["a"]["skipped"] = 31
    with pytest.raises(ConfigError, match="skipped must be"):
        workload_from_results(bad, "run R")
