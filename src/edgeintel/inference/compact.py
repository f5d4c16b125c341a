"""Compact layers: replace standard convolutions by depthwise-separable ones.

A k x k conv (out, in, k...) becomes a depthwise k x k conv (one filter per input
channel) followed by a 1x1 pointwise conv. It is initialized with the best such
approximation of the original kernel in the Frobenius norm: for each input
channel ``i`` the (out x k...) slice ``W[:, i]`` is replaced by its rank-1 SVD
``p[:, i] d_i^T`` (``d_i`` the depthwise filter, ``p`` the pointwise weights),
then the model is fine-tuned. Convs with fewer than ``min_in_channels`` inputs
(e.g. the first layer on 1-3 channels) or a 1x1 kernel are reported and kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeintel.errors import ConfigError
from edgeintel.inference.base import (
    CompressContext,
    FinetuneMixin,
    StageKind,
    TorchStage,
    clone_model,
    finetune,
    register_technique,
    set_submodule,
)

__all__ = ["CompactConfig", "separable_factors", "to_separable", "to_separable_conv"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class CompactConfig(FinetuneMixin):
    """Replace every standard conv with >= ``min_in_channels`` inputs by a separable pair."""

    min_in_channels: int = 4

    def __post_init__(self) -> None:
        if self.min_in_channels < 1:
            raise ConfigError(f"min_in_channels must be >= 1, got {self.min_in_channels}")
        self._check_finetune()


def separable_factors(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Depthwise (in, 1, k...) and pointwise (out, in, 1...) weights best approximating ``w``."""
    cout, cin = w.shape[:2]
    kshape = w.shape[2:]
    dw = np.zeros((cin, 1, *kshape), dtype=np.float32)
    pw = np.zeros((cout, cin) + (1,) * len(kshape), dtype=np.float32)
    for i in range(cin):
        mat = w[:, i].reshape(cout, -1).astype(np.float64)
        u, s, vt = np.linalg.svd(mat, full_matrices=False)
        root = np.sqrt(s[0])
        dw[i, 0] = (root * vt[0]).reshape(kshape)
        pw[:, i] = (root * u[:, 0]).reshape((cout,) + (1,) * len(kshape))
    return dw, pw


def to_separable_conv(layer: Any) -> nn.Sequential:
    """Depthwise + pointwise pair initialized from ``layer``'s kernel (bias on the pointwise)."""
    cls = type(layer)
    dw_w, pw_w = separable_factors(layer.weight.detach().numpy())
    dw = cls(
        layer.in_channels,
        layer.in_channels,
        layer.kernel_size,
        stride=layer.stride,
        padding=layer.padding,
        dilation=layer.dilation,
        groups=layer.in_channels,
        bias=False,
        padding_mode=layer.padding_mode,
    )
    pw = cls(layer.in_channels, layer.out_channels, 1, bias=layer.bias is not None)
    with torch.no_grad():
        dw.weight.copy_(torch.from_numpy(dw_w))
        pw.weight.copy_(torch.from_numpy(pw_w))
        if layer.bias is not None:
            pw.bias.copy_(layer.bias)
    return nn.Sequential(dw, pw)


def to_separable(
    model: nn.Module, min_in_channels: int = 4
) -> tuple[nn.Module, list[str], list[str]]:
    """A copy with eligible convs made separable; returns warnings and the replaced layer names."""
    model = clone_model(model)
    warns: list[str] = []
    done: list[str] = []
    for name, m in list(model.named_modules()):
        if not isinstance(m, _CONV):
            continue
        kind = type(m).__name__
        if m.groups != 1:
            continue  # already depthwise or grouped
        if all(k == 1 for k in m.kernel_size):
            continue  # a 1x1 conv is already pointwise
        if m.in_channels < min_in_channels:
            warns.append(
                f"{name} ({kind} {m.in_channels}->{m.out_channels}): fewer than "
                f"{min_in_channels} input channels; kept"
            )
            continue
        set_submodule(model, name, to_separable_conv(m))
        done.append(name)
    model.eval()
    return model, warns, done


@register_technique("compact", CompactConfig, StageKind.TORCH)
def _compact(model: nn.Module, config: CompactConfig, ctx: CompressContext) -> TorchStage:
    """Replace standard convs by depthwise-separable pairs (SVD-initialized), then fine-tune."""
    new, warns, done = to_separable(model, config.min_in_channels)
    losses = finetune(new, config, ctx) if done else []
    return TorchStage(new, warns, {"replaced": done, "finetune_loss": losses})
