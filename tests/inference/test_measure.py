"""Measurement: MACs and parameters counted by hand, peak memory, latency protocol."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from torch import nn

from edgeintel.errors import ConfigError
from edgeintel.inference import (
    MeasureConfig,
    count_macs,
    count_onnx_params,
    estimate_peak_memory,
    load_onnx,
    measure_onnx,
    measure_torch_latency,
)
from edgeintel.models import export_onnx


def _net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, bias=False),  # 8x8 out: 4*64 * 2*9 = 4608 MACs
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 16, 5),  # 64 * 5 = 320 MACs
    )


def test_macs_params_and_memory_by_hand(tmp_path: Path) -> None:
    art = export_onnx(_net(), (2, 8, 8), tmp_path / "n.onnx", list("abcde"))
    model = load_onnx(art.path)
    assert count_macs(model) == 4608 + 320
    assert count_onnx_params(model) == 4 * 2 * 9 + 64 * 5 + 5
    x = np.zeros((1, 2, 8, 8), np.float32)
    weights = (72 + 325) * 4
    # live at once at most: input (512 B) + conv output (1 KiB), or conv out + relu out
    peak = estimate_peak_memory(art.path, x)
    assert weights + 1024 <= peak <= weights + 2 * 1024 + 512


def test_measure_onnx_and_scaling(tmp_path: Path) -> None:
    art = export_onnx(_net(), (2, 8, 8), tmp_path / "n.onnx", list("abcde"))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 2, 8, 8)).astype(np.float32)
    y = rng.integers(0, 5, 20)
    m = measure_onnx(art.path, x, y, MeasureConfig(runs=5, warmup=1, compute_speed=0.25))
    assert m.onnx_bytes == Path(art.path).stat().st_size and 0 <= m.accuracy <= 1
    assert m.latency.runs == 5 and m.latency.p50_ms > 0
    assert m.latency_scaled.p50_ms == pytest.approx(4 * m.latency.p50_ms)
    assert m.to_json()["latency"]["runs"] == 5
    t = measure_torch_latency(_net(), x[:1], runs=5, warmup=1)
    assert t.runs == 5 and t.p50_ms > 0
    with pytest.raises(ConfigError, match="compute_speed must be > 0"):
        MeasureConfig(compute_speed=0)
