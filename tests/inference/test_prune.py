"""Structured channel pruning (physically smaller graphs) and unstructured magnitude pruning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from edgeintel.errors import ConfigError
from edgeintel.inference import (
    MeasureConfig,
    PruneStructuredConfig,
    PruneUnstructuredConfig,
    compress,
    count_macs,
    load_onnx,
    prune_channels,
    prune_unstructured,
    sparsity,
)
from edgeintel.inference.prune import channel_importance, keep_count
from edgeintel.models import build_model, export_onnx

from .conftest import Trained

FAST = MeasureConfig(runs=5, warmup=1)


def _weight_shapes(path: Path) -> list[tuple[int, ...]]:
    m = onnx.load(str(path))
    return sorted(tuple(i.dims) for i in m.graph.initializer if len(i.dims) >= 2)


def test_keep_count_and_importance_by_hand() -> None:
    assert keep_count(64, 0.5) == 32
    assert keep_count(10, 0.75) == 3  # ceil(2.5)
    assert keep_count(10, 0.75, round_to=4) == 4
    assert keep_count(3, 0.9) == 1
    w = np.array([[[1.0, -2.0]], [[0.5, 0.5]], [[-3.0, 0.0]]])
    np.testing.assert_allclose(channel_importance(w), [3.0, 1.0, 3.0])
    np.testing.assert_allclose(channel_importance(w, np.array([1.0, -4.0, 0.5])), [3.0, 4.0, 1.5])


def test_structured_pruning_shrinks_onnx_weight_shapes(tmp_path: Path) -> None:
    model = build_model("image_cnn", (1, 8, 8), 10, width=16)
    new, warns, changes = prune_channels(model, (1, 8, 8), 0.5)
    assert warns == []
    assert changes == {"0": (16, 8), "4": (32, 16), "8": (64, 32)}
    a = export_onnx(model, (1, 8, 8), tmp_path / "a.onnx", [str(i) for i in range(10)])
    b = export_onnx(new, (1, 8, 8), tmp_path / "b.onnx", [str(i) for i in range(10)])
    assert _weight_shapes(Path(a.path)) == sorted(
        [(10, 64), (16, 1, 3, 3), (32, 16, 3, 3), (64, 32, 3, 3)]
    )
    assert _weight_shapes(Path(b.path)) == sorted(
        [(10, 32), (8, 1, 3, 3), (16, 8, 3, 3), (32, 16, 3, 3)]
    )
    assert b.bytes < 0.35 * a.bytes
    assert count_macs(load_onnx(b.path)) < 0.3 * count_macs(load_onnx(a.path))


def test_pruning_removes_only_dead_channels_exactly() -> None:
    """Channels whose BN scale is zero carry nothing: removing them keeps outputs identical."""
    torch.manual_seed(0)
    model = build_model("image_dscnn", (1, 12, 12), 5, width=8)
    for m in model.modules():  # realistic BN statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.bias.data.zero_()
    dead = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d) and m.num_features in (8, 16, 32):
            idx = torch.arange(0, m.num_features, 2)
            m.weight.data[idx] = 0.0
            dead[name] = idx
    model.eval()
    x = torch.randn(4, 1, 12, 12)
    new, warns, changes = prune_channels(model, (1, 12, 12), 0.5)
    assert warns == [] and all(after == before // 2 for before, after in changes.values())
    with torch.no_grad():
        np.testing.assert_allclose(new(x).numpy(), model(x).numpy(), atol=1e-5)
    dw = [m for m in new.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert dw and all(m.groups == m.in_channels == m.out_channels for m in dw)


class _FlattenNet(nn.Module):
    """Conv -> flatten of a 4x4 map -> Linear: the Linear's inputs come in blocks of 16."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(6 * 16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(torch.relu(self.pool(self.conv(x))), 1))


def test_flatten_to_linear_boundary() -> None:
    torch.manual_seed(0)
    net = _FlattenNet().eval()
    with torch.no_grad():
        net.conv.weight[[1, 4]] = 0.0
        net.conv.bias[[1, 4]] = -1.0  # relu kills them: channels 1 and 4 are dead
    new, warns, changes = prune_channels(net, (1, 8, 8), 1 / 3)
    assert warns == [] and changes == {"conv": (6, 4)}
    assert new.fc.weight.shape == (3, 4 * 16)
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        np.testing.assert_allclose(new(x).numpy(), net(x).numpy(), atol=1e-5)


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.a = nn.Conv2d(8, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 16, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.stem(x))
        h = h + torch.relu(self.a(h))
        return self.fc(self.pool(torch.relu(self.b(h))).flatten(1))


def test_residual_add_is_reported_and_left_unchanged() -> None:
    net = _Residual().eval()
    new, warns, changes = prune_channels(net, (1, 8, 8), 0.5)
    assert set(changes) == {"b"}  # b feeds only the linear head
    named = " | ".join(warns)
    assert "stem (Conv2d): its channels join a residual add" in named
    assert "a (Conv2d): its channels join a residual add" in named
    assert new.stem.out_channels == 8 and new.a.out_channels == 8 and new.b.out_channels == 8
    assert new(torch.zeros(2, 1, 8, 8)).shape == (2, 3)


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.2, 1.5])
def test_ratio_outside_open_interval(ratio: float) -> None:
    with pytest.raises(ConfigError, match=r"ratio must lie in \(0, 1\), got"):
        PruneStructuredConfig(ratio=ratio)
    with pytest.raises(ConfigError, match=r"ratio must lie in \(0, 1\)"):
        PruneUnstructuredConfig(ratio=ratio)


def test_structured_prune_end_to_end_on_digits(digits_cnn: Trained, tmp_path: Path) -> None:
    res = compress(
        digits_cnn.model,
        [("prune_structured", {"ratio": 0.5})],
        digits_cnn.train,
        eval_data=digits_cnn.test,
        workdir=tmp_path,
        measure=FAST,
    )
    base, final = res.baseline, res.final
    assert final.onnx_bytes < 0.4 * base.onnx_bytes and final.params < 0.35 * base.params
    assert final.accuracy >= base.accuracy - 0.08  # fine-tuned after pruning
    assert res.model is not None and res.model(torch.zeros(1, 1, 8, 8)).shape == (1, 10)


def test_unstructured_global_and_per_layer(digits_cnn: Trained, tmp_path: Path) -> None:
    new, warns = prune_unstructured(digits_cnn.model, 0.6, "layer")
    assert warns == []
    for m in new.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            assert abs(float((m.weight == 0).float().mean()) - 0.6) < 0.02
    res = compress(
        digits_cnn.model,
        [("prune_unstructured", {"ratio": 0.7, "scope": "global"})],
        digits_cnn.train,
        eval_data=digits_cnn.test,
        workdir=tmp_path,
        measure=FAST,
    )
    assert res.model is not None and abs(sparsity(res.model) - 0.7) < 0.01  # mask kept in tuning
    assert not any(hasattr(m, "weight_orig") for m in res.model.modules())  # made permanent
    b, f = res.baseline, res.final
    assert f.compressed_bytes < 0.75 * b.compressed_bytes
    assert f.accuracy >= b.accuracy - 0.05
