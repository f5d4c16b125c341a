"""Measure a runtime artifact on this CPU: file size, batch-1 latency, peak memory.

Latency uses the project's stable-window protocol (``edgeintel.latency.time_calls``):
warm-up, then windows of timed single-sample calls until the window medians agree.
Peak memory is the growth of the peak resident set (VmHWM) over loading the artifact and
running one sample, measured in a fresh process (``python -m ...runtimes.measure``) after the
runtime's package is imported, so imports and other artifacts do not count.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeintel.errors import ModelError
from edgeintel.inference.runtimes.base import get_runtime
from edgeintel.latency import LatencyStats, time_calls

__all__ = ["RuntimeMeasurement", "measure_artifact", "peak_memory_bytes"]


@dataclass(frozen=True)
class RuntimeMeasurement:
    """One artifact on this CPU: bytes on disk, latency at batch 1 (ms), peak memory (bytes)."""

    file_bytes: int
    latency: LatencyStats
    peak_memory_bytes: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "file_bytes": self.file_bytes,
            "latency": self.latency.to_json(),
            "peak_memory_bytes": self.peak_memory_bytes,
        }


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field}")


def _probe_main(runtime: str, artifact: str, sample_path: str) -> dict[str, int]:
    """In a fresh process: peak RSS growth (bytes) of loading ``artifact`` and one run."""
    rt = get_runtime(runtime)
    for module in rt.imports:
        importlib.import_module(module)
    sample = np.load(sample_path)
    before = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    rt.load(Path(artifact)).run(sample)
    return {"peak_bytes": max(0, _status_kb("VmHWM") - before) * 1024}


def peak_memory_bytes(runtime: str, artifact: Path, sample: np.ndarray) -> int | None:
    """Peak resident memory growth (bytes) of loading ``artifact`` and running ``sample``
    (batch 1), in a fresh process; ``None`` where the OS does not expose it (not Linux)."""
    if not Path("/proc/self/clear_refs").exists():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        sample_path = Path(tmp) / "sample.npy"
        np.save(sample_path, np.ascontiguousarray(sample, dtype=np.float32))
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.run(
            [sys.executable, "-m", __name__, runtime, str(artifact), str(sample_path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelError(f"{artifact}: the memory probe failed ({tail})")
    return int(json.loads(proc.stdout.strip().splitlines()[-1])["peak_bytes"])


def measure_artifact(
    runtime: str,
    artifact: Path,
    sample: np.ndarray,
    *,
    runs: int = 100,
    warmup: int = 10,
    windows: int = 3,
    memory: bool = True,
) -> RuntimeMeasurement:
    """Size, stable-window latency of ``sample`` (batch 1) and peak memory of one artifact."""
    rt = get_runtime(runtime)
    predictor = rt.load(artifact)
    x = np.ascontiguousarray(sample[:1], dtype=np.float32)
    latency = time_calls(lambda: predictor.run(x), runs, warmup, windows=windows)
    return RuntimeMeasurement(
        file_bytes=rt.size_bytes(artifact),
        latency=latency,
        peak_memory_bytes=peak_memory_bytes(runtime, artifact, x) if memory else None,
    )


if __name__ == "__main__":
    print(json.dumps(_probe_main(sys.argv[1], sys.argv[2], sys.argv[3])))
