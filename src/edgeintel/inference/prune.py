"""Pruning: unstructured magnitude pruning and structured channel pruning.

Structured pruning physically removes output channels of Conv/Linear layers
and rebuilds every layer their channels flow into (BatchNorm, depthwise convs,
the next Conv's input channels, the Linear after a flatten), so the exported
ONNX graph has smaller weight tensors and fewer MACs. Channel flow is found on
a ``torch.fx`` trace; a layer whose output reaches a residual add, a concat, the
model output or any op the tracer cannot follow is reported by name and kept.
Channels are ranked by the L1 norm of the BatchNorm-folded filter.

Unstructured pruning zeroes the smallest-magnitude weights (globally or per
layer) with ``torch.nn.utils.prune``, keeps the mask during fine-tuning and
then makes it permanent; the dense ONNX file keeps its size, but its
compressed size shrinks.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp
from torch.nn.utils import prune as tprune

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
    "PruneStructuredConfig",
    "PruneUnstructuredConfig",
    "channel_importance",
    "keep_count",
    "prune_channels",
    "prune_unstructured",
    "sparsity",
]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_PASS_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Mish,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Identity,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
)
_PASS_FUNCTIONS = {
    F.relu,
    torch.relu,
    F.relu6,
    F.gelu,
    F.silu,
    torch.sigmoid,
    torch.tanh,
    F.dropout,
    F.max_pool1d,
    F.max_pool2d,
    F.avg_pool1d,
    F.avg_pool2d,
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
}
_PASS_METHODS = {"relu", "sigmoid", "tanh", "contiguous"}


@dataclass(frozen=True)
class PruneStructuredConfig(FinetuneMixin):
    """Remove ``ratio`` of the output channels of every prunable Conv/Linear (0 < ratio < 1).

    Kept channel counts are rounded up to a multiple of ``round_to`` (SIMD-friendly).
    """

    ratio: float = 0.5
    round_to: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.ratio < 1:
            raise ConfigError(f"ratio must lie in (0, 1), got {self.ratio}")
        if self.round_to < 1:
            raise ConfigError(f"round_to must be >= 1, got {self.round_to}")
        self._check_finetune()


@dataclass(frozen=True)
class PruneUnstructuredConfig(FinetuneMixin):
    """Zero ``ratio`` of the Conv/Linear weights by magnitude, over all layers (``scope``=global)
    or within each layer (``scope``=layer)."""

    ratio: float = 0.5
    scope: str = "global"

    def __post_init__(self) -> None:
        if not 0 < self.ratio < 1:
            raise ConfigError(f"ratio must lie in (0, 1), got {self.ratio}")
        if self.scope not in ("global", "layer"):
            raise ConfigError(f"scope must be 'global' or 'layer', got {self.scope!r}")
        self._check_finetune()


# --------------------------------------------------------------------------- maths


def keep_count(channels: int, ratio: float, round_to: int = 1) -> int:
    """Channels kept when removing ``ratio`` of ``channels``: ceil to ``round_to``, at least 1."""
    keep = channels * (1.0 - ratio)
    k = int(np.ceil(keep / round_to - 1e-9) * round_to)
    return max(1, min(channels, k))


def channel_importance(weight: np.ndarray, bn_scale: np.ndarray | None = None) -> np.ndarray:
    """L1 norm of each output filter of ``weight`` (out, ...), times |BN scale| if given."""
    norms = np.abs(weight.reshape(weight.shape[0], -1)).sum(axis=1)
    if bn_scale is not None:
        norms = norms * np.abs(bn_scale)
    return norms


def sparsity(model: nn.Module) -> float:
    """Fraction of exactly-zero weights over all Conv/Linear layers."""
    total = zeros = 0
    for m in model.modules():
        if isinstance(m, (*_CONV, nn.Linear)):
            total += m.weight.numel()
            zeros += int((m.weight == 0).sum())
    return zeros / max(total, 1)


# --------------------------------------------------------------------------- structured


@dataclass
class _Group:
    """A producer layer, the layers that follow its channels, and the layers that consume them."""

    producer: str
    followers: list[str] = field(default_factory=list)
    consumers: list[tuple[str, int]] = field(default_factory=list)  # (name, features per channel)
    first_bn: str | None = None


def _is_depthwise(m: nn.Module) -> bool:
    return isinstance(m, _CONV) and m.groups > 1 and m.groups == m.in_channels == m.out_channels


def _is_producer(m: nn.Module) -> bool:
    return (isinstance(m, _CONV) and m.groups == 1) or isinstance(m, nn.Linear)


def _flatten_start(node: fx.Node, gm: fx.GraphModule) -> int | None:
    """start_dim of a flatten node (module, function or method), else None."""
    if node.op == "call_module" and isinstance(gm.get_submodule(str(node.target)), nn.Flatten):
        mod: Any = gm.get_submodule(str(node.target))
        return int(mod.start_dim) if mod.end_dim == -1 else None
    if (node.op == "call_function" and node.target is torch.flatten) or (
        node.op == "call_method" and node.target == "flatten"
    ):
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        return int(start) if isinstance(start, int) else None
    return None


def _trace_group(gm: fx.GraphModule, node: fx.Node, channels: int) -> tuple[_Group | None, str]:
    """Follow ``node``'s output channels to the layers that consume them."""
    group = _Group(producer=str(node.target))
    stack: list[tuple[fx.Node, int]] = [(u, 1) for u in node.users]
    seen: set[str] = set()
    while stack:
        user, per_channel = stack.pop()
        if user.name in seen:
            continue
        seen.add(user.name)
        if user.op == "output":
            return None, "feeds the model output"
        if user.op == "call_module":
            mod: Any = gm.get_submodule(str(user.target))
            name = str(user.target)
            if isinstance(mod, _BN) and per_channel == 1 and mod.num_features == channels:
                group.followers.append(name)
                group.first_bn = group.first_bn or name
            elif _is_depthwise(mod) and per_channel == 1 and mod.in_channels == channels:
                group.followers.append(name)
            elif isinstance(mod, _CONV) and mod.groups == 1 and per_channel == 1:
                group.consumers.append((name, 1))
                continue
            elif isinstance(mod, nn.Linear) and (per_channel > 1 or mod.in_features == channels):
                group.consumers.append((name, per_channel))
                continue
            elif isinstance(mod, _PASS_MODULES):
                pass
            elif _flatten_start(user, gm) == 1:
                meta = user.args[0].meta.get("tensor_meta") if user.args else None  # type: ignore[union-attr]
                if meta is None:
                    return None, "flatten of unknown shape"
                per_channel = int(np.prod(meta.shape[2:])) if len(meta.shape) > 2 else 1
            else:
                return (
                    None,
                    f"its channels reach {name} ({type(mod).__name__}), which cannot be rebuilt",
                )
        elif user.op == "call_function":
            if user.target in _PASS_FUNCTIONS and user.args and user.args[0] is not None:
                pass
            elif _flatten_start(user, gm) == 1:
                meta = user.args[0].meta.get("tensor_meta")  # type: ignore[union-attr]
                per_channel = int(np.prod(meta.shape[2:])) if meta and len(meta.shape) > 2 else 1
            elif user.target in (operator.add, torch.add, operator.iadd):
                return None, f"its channels join a residual add ({user.name})"
            elif user.target is torch.cat:
                return None, f"its channels join a concat ({user.name})"
            else:
                return None, f"its channels reach {getattr(user.target, '__name__', user.target)}"
        elif user.op == "call_method":
            if user.target in _PASS_METHODS:
                pass
            elif _flatten_start(user, gm) == 1:
                meta = user.args[0].meta.get("tensor_meta")  # type: ignore[union-attr]
                per_channel = int(np.prod(meta.shape[2:])) if meta and len(meta.shape) > 2 else 1
            elif user.target in ("add", "add_"):
                return None, f"its channels join a residual add ({user.name})"
            else:
                return None, f"its channels reach method .{user.target}()"
        else:
            return None, f"its channels reach {user.op} {user.target}"
        stack.extend((u, per_channel) for u in user.users)
    if not group.consumers:
        return None, "no layer consumes its channels"
    return group, ""


def _bn_scale(bn: Any) -> np.ndarray:
    gamma = bn.weight.detach().numpy() if bn.weight is not None else np.ones(bn.num_features)
    var = bn.running_var.detach().numpy() if bn.running_var is not None else np.ones_like(gamma)
    return np.asarray(gamma / np.sqrt(var + bn.eps))


def _new_conv(old: Any, cin: int, cout: int, groups: int) -> nn.Module:
    return type(old)(
        cin,
        cout,
        old.kernel_size,
        stride=old.stride,
        padding=old.padding,
        dilation=old.dilation,
        groups=groups,
        bias=old.bias is not None,
        padding_mode=old.padding_mode,
    )


def _slice_bn(bn: Any, keep: torch.Tensor) -> nn.Module:
    new = type(bn)(
        len(keep),
        eps=bn.eps,
        momentum=bn.momentum,
        affine=bn.affine,
        track_running_stats=bn.track_running_stats,
    )
    with torch.no_grad():
        if bn.affine:
            new.weight.copy_(bn.weight[keep])
            new.bias.copy_(bn.bias[keep])
        if bn.track_running_stats:
            new.running_mean.copy_(bn.running_mean[keep])
            new.running_var.copy_(bn.running_var[keep])
            new.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new


def prune_channels(
    model: nn.Module, input_shape: tuple[int, ...], ratio: float, round_to: int = 1
) -> tuple[nn.Module, list[str], dict[str, tuple[int, int]]]:
    """A copy of ``model`` with ``ratio`` of each prunable layer's output channels removed.

    Returns the new model, warnings naming the layers kept unchanged and why, and
    ``{layer: (channels before, after)}``.
    """
    if not 0 < ratio < 1:
        raise ConfigError(f"prune ratio must lie in (0, 1), got {ratio}")
    model = clone_model(model)
    try:
        gm = fx.symbolic_trace(model)
        ShapeProp(gm).propagate(torch.zeros(1, *input_shape))
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        return model, [f"model: not traceable by torch.fx ({msg}); structured pruning skipped"], {}
    groups: list[_Group] = []
    warns: list[str] = []
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        mod: Any = gm.get_submodule(str(node.target))
        if not _is_producer(mod):
            if isinstance(mod, _CONV) and not _is_depthwise(mod):
                warns.append(
                    f"{node.target} ({type(mod).__name__} groups={mod.groups}): grouped "
                    "conv not pruned"
                )
            continue
        channels = mod.out_channels if isinstance(mod, _CONV) else mod.out_features
        group, why = _trace_group(gm, node, channels)
        if group is None:
            if why != "feeds the model output":
                warns.append(f"{node.target} ({type(mod).__name__}): {why}; channels kept")
            continue
        groups.append(group)
    # keep-indices from the original weights, then rebuild every touched layer once
    out_keep: dict[str, torch.Tensor] = {}
    in_keep: dict[str, torch.Tensor] = {}
    follow_keep: dict[str, torch.Tensor] = {}
    changes: dict[str, tuple[int, int]] = {}
    for g in groups:
        prod: Any = model.get_submodule(g.producer)
        w = prod.weight.detach().numpy()
        scale = _bn_scale(model.get_submodule(g.first_bn)) if g.first_bn else None
        imp = channel_importance(w, scale)
        k = keep_count(len(imp), ratio, round_to)
        keep = torch.from_numpy(np.sort(np.argsort(-imp, kind="stable")[:k]).astype(np.int64))
        out_keep[g.producer] = keep
        changes[g.producer] = (len(imp), k)
        for f in g.followers:
            follow_keep[f] = keep
        for name, per in g.consumers:
            idx = (
                keep if per == 1 else (keep[:, None] * per + torch.arange(per)[None, :]).reshape(-1)
            )
            in_keep[name] = idx
    for name in sorted(set(out_keep) | set(in_keep)):
        old: Any = model.get_submodule(name)
        ok = out_keep.get(name)
        ik = in_keep.get(name)
        with torch.no_grad():
            w = old.weight
            if ok is not None:
                w = w[ok]
            if ik is not None:
                w = w[:, ik]
            if isinstance(old, nn.Linear):
                new: Any = nn.Linear(w.shape[1], w.shape[0], bias=old.bias is not None)
            else:
                new = _new_conv(old, w.shape[1], w.shape[0], 1)
            new.weight.copy_(w)
            if old.bias is not None:
                new.bias.copy_(old.bias if ok is None else old.bias[ok])
        set_submodule(model, name, new)
    for name, keep in follow_keep.items():
        old = model.get_submodule(name)
        new = None
        if isinstance(old, _BN):
            set_submodule(model, name, _slice_bn(old, keep))
        else:  # depthwise conv
            new = _new_conv(old, len(keep), len(keep), len(keep))
            with torch.no_grad():
                new.weight.copy_(old.weight[keep])
                if old.bias is not None:
                    new.bias.copy_(old.bias[keep])
            set_submodule(model, name, new)
    model.eval()
    return model, warns, changes


@register_technique("prune_structured", PruneStructuredConfig, StageKind.TORCH)
def _prune_structured(
    model: nn.Module, config: PruneStructuredConfig, ctx: CompressContext
) -> TorchStage:
    """Structured channel pruning that physically removes filters, then fine-tuning."""
    new, warns, changes = prune_channels(model, ctx.input_shape, config.ratio, config.round_to)
    losses = finetune(new, config, ctx) if changes else []
    return TorchStage(
        new, warns, {"channels": {k: list(v) for k, v in changes.items()}, "finetune_loss": losses}
    )


# --------------------------------------------------------------------------- unstructured


def prune_unstructured(
    model: nn.Module, ratio: float, scope: str = "global"
) -> tuple[nn.Module, list[str]]:
    """A copy of ``model`` with magnitude masks on Conv/Linear weights (not yet permanent)."""
    if not 0 < ratio < 1:
        raise ConfigError(f"prune ratio must lie in (0, 1), got {ratio}")
    model = clone_model(model)
    targets: list[tuple[nn.Module, str]] = []
    warns: list[str] = []
    for name, m in model.named_modules():
        if isinstance(m, (*_CONV, nn.Linear)):
            targets.append((m, "weight"))
        elif (
            not list(m.children())
            and any(True for _ in m.parameters(recurse=False))
            and not isinstance(m, _BN)
        ):
            warns.append(
                f"{name} ({type(m).__name__}): not a Conv/Linear layer; weights kept dense"
            )
    if not targets:
        return model, [*warns, "model: no Conv/Linear layer to prune"]
    if scope == "global":
        tprune.global_unstructured(targets, pruning_method=tprune.L1Unstructured, amount=ratio)
    else:
        for m, attr in targets:
            tprune.l1_unstructured(m, attr, amount=ratio)
    return model, warns


def _make_permanent(model: nn.Module) -> None:
    for m in model.modules():
        if tprune.is_pruned(m) and hasattr(m, "weight_orig"):
            tprune.remove(m, "weight")


@register_technique("prune_unstructured", PruneUnstructuredConfig, StageKind.TORCH)
def _prune_unstructured(
    model: nn.Module, config: PruneUnstructuredConfig, ctx: CompressContext
) -> TorchStage:
    """Unstructured magnitude pruning (global or per layer), masked fine-tuning, made permanent."""
    new, warns = prune_unstructured(model, config.ratio, config.scope)
    losses = finetune(new, config, ctx)
    _make_permanent(new)
    info: dict[str, Any] = {"sparsity": sparsity(new), "finetune_loss": losses}
    return TorchStage(new, warns, info)
