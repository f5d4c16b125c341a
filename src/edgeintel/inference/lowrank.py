"""Low-rank factorization of Linear and Conv layers by truncated SVD, then fine-tuning.

A Linear ``W`` (out x in) becomes ``Linear(in, r)`` then ``Linear(r, out)`` with
``W ~ (U_r sqrt(S_r)) (sqrt(S_r) V_r^T)``. A Conv kernel (out, in, k...) is
reshaped to an (out x in*k...) matrix and factorized the same way into a conv
with ``r`` filters of the original kernel, stride and padding followed by a
1x1 conv to ``out`` channels. The rank is the smallest that keeps ``energy``
of the squared singular values, or the largest whose two layers hold at most
``param_ratio`` of the original weights. A layer whose factorization would not
save parameters, or that is grouped, is reported and kept.
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

__all__ = [
    "LowRankConfig",
    "choose_rank",
    "factorize_conv",
    "factorize_linear",
    "low_rank",
    "reconstruction_error",
    "truncated_svd",
]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class LowRankConfig(FinetuneMixin):
    """Rank by ``energy`` (fraction of squared singular values kept, in (0, 1]) or by
    ``param_ratio`` (target fraction of the layer's weights, in (0, 1)); give exactly one.
    ``layers`` selects ``all``, ``linear`` or ``conv`` layers."""

    energy: float | None = 0.9
    param_ratio: float | None = None
    layers: str = "all"

    def __post_init__(self) -> None:
        if self.param_ratio is not None and self.energy == 0.9:
            object.__setattr__(self, "energy", None)  # param_ratio given: drop the default
        if (self.energy is None) == (self.param_ratio is None):
            raise ConfigError("give exactly one of energy or param_ratio")
        if self.energy is not None and not 0 < self.energy <= 1:
            raise ConfigError(f"energy must lie in (0, 1], got {self.energy}")
        if self.param_ratio is not None and not 0 < self.param_ratio < 1:
            raise ConfigError(f"param_ratio must lie in (0, 1), got {self.param_ratio}")
        if self.layers not in ("all", "linear", "conv"):
            raise ConfigError(f"layers must be 'all', 'linear' or 'conv', got {self.layers!r}")
        self._check_finetune()


def truncated_svd(w: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Factors ``a`` (m x r) and ``b`` (r x n) with ``a @ b`` the best rank-``r`` approximation."""
    if not 1 <= rank <= min(w.shape):
        raise ConfigError(f"rank must lie in [1, {min(w.shape)}], got {rank}")
    u, s, vt = np.linalg.svd(np.asarray(w, dtype=np.float64), full_matrices=False)
    root = np.sqrt(s[:rank])
    return (u[:, :rank] * root).astype(np.float32), (root[:, None] * vt[:rank]).astype(np.float32)


def reconstruction_error(w: np.ndarray, rank: int) -> float:
    """Relative Frobenius error ``||W - A B|| / ||W||`` of the rank-``rank`` factorization."""
    a, b = truncated_svd(w, rank)
    return float(np.linalg.norm(w - a @ b)) / max(float(np.linalg.norm(w)), 1e-12)


def choose_rank(
    s: np.ndarray, shape: tuple[int, int], energy: float | None, param_ratio: float | None
) -> int:
    """Rank from singular values ``s`` of an (m x n) matrix by energy or parameter budget."""
    m, n = shape
    if energy is not None:
        cum = np.cumsum(s**2) / max(float((s**2).sum()), 1e-30)
        return min(len(s), int(np.searchsorted(cum, energy - 1e-12)) + 1)
    assert param_ratio is not None
    return max(1, min(len(s), int(param_ratio * m * n / (m + n))))


def factorize_linear(layer: nn.Linear, rank: int) -> nn.Sequential:
    """Two Linears (in -> rank -> out) approximating ``layer``; the bias stays on the second."""
    a, b = truncated_svd(layer.weight.detach().numpy(), rank)
    first = nn.Linear(layer.in_features, rank, bias=False)
    second = nn.Linear(rank, layer.out_features, bias=layer.bias is not None)
    with torch.no_grad():
        first.weight.copy_(torch.from_numpy(b))
        second.weight.copy_(torch.from_numpy(a))
        if layer.bias is not None:
            second.bias.copy_(layer.bias)
    return nn.Sequential(first, second)


def factorize_conv(layer: Any, rank: int) -> nn.Sequential:
    """A conv with ``rank`` filters of the original kernel, then a 1x1 conv to the outputs."""
    w = layer.weight.detach().numpy()
    cout = w.shape[0]
    a, b = truncated_svd(w.reshape(cout, -1), rank)
    cls = type(layer)
    first = cls(
        layer.in_channels,
        rank,
        layer.kernel_size,
        stride=layer.stride,
        padding=layer.padding,
        dilation=layer.dilation,
        bias=False,
        padding_mode=layer.padding_mode,
    )
    second = cls(rank, cout, 1, bias=layer.bias is not None)
    with torch.no_grad():
        first.weight.copy_(torch.from_numpy(b.reshape(rank, *w.shape[1:])))
        second.weight.copy_(torch.from_numpy(a.reshape(cout, rank, *([1] * (w.ndim - 2)))))
        if layer.bias is not None:
            second.bias.copy_(layer.bias)
    return nn.Sequential(first, second)


def low_rank(
    model: nn.Module, energy: float | None, param_ratio: float | None, layers: str = "all"
) -> tuple[nn.Module, list[str], dict[str, Any]]:
    """A copy of ``model`` with eligible layers factorized; returns warnings and chosen ranks."""
    model = clone_model(model)
    warns: list[str] = []
    ranks: dict[str, Any] = {}
    m: Any
    for name, m in list(model.named_modules()):
        is_lin = isinstance(m, nn.Linear) and layers in ("all", "linear")
        is_conv = isinstance(m, _CONV) and layers in ("all", "conv")
        if not (is_lin or is_conv):
            continue
        if is_conv and m.groups != 1:
            warns.append(
                f"{name} ({type(m).__name__} groups={m.groups}): grouped conv not factorized"
            )
            continue
        w = m.weight.detach().numpy().reshape(m.weight.shape[0], -1)
        s = np.linalg.svd(w.astype(np.float64), compute_uv=False)
        r = choose_rank(s, w.shape, energy, param_ratio)
        if r * (w.shape[0] + w.shape[1]) >= w.size:
            warns.append(
                f"{name} ({type(m).__name__} {w.shape[0]}x{w.shape[1]}): rank {r} would not "
                "save parameters; kept"
            )
            continue
        new = factorize_linear(m, r) if is_lin else factorize_conv(m, r)
        set_submodule(model, name, new)
        ranks[name] = {"rank": r, "full_rank": int(min(w.shape))}
    model.eval()
    return model, warns, ranks


@register_technique("low_rank", LowRankConfig, StageKind.TORCH)
def _low_rank(model: nn.Module, config: LowRankConfig, ctx: CompressContext) -> TorchStage:
    """Truncated-SVD factorization of Linear and Conv layers, then fine-tuning."""
    new, warns, ranks = low_rank(model, config.energy, config.param_ratio, config.layers)
    losses = finetune(new, config, ctx) if ranks else []
    return TorchStage(new, warns, {"ranks": ranks, "finetune_loss": losses})
