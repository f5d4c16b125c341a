"""Quantization-aware fine-tuning (QAT) in PyTorch before export.

The model is fine-tuned with int8 fake quantization inserted where ONNX Runtime's
static quantizer will later quantize it: every Conv/Linear weight is rounded to
the symmetric int8 grid (per output channel, range [-127, 127], scale
``max|w| / 127``, as ORT stores QInt8 weights) through a
``torch.nn.utils.parametrize`` parametrization, and every Conv/Linear input is
rounded to a per-tensor uint8 grid whose range a
``torch.ao.quantization.FakeQuantize`` observer tracks (moving-average min/max).
Gradients pass the rounding straight through (straight-through estimator), so
the float weights learn to sit where rounding hurts least. Afterwards the fake
quantization is removed: the model keeps its fine-tuned float32 weights and
exports as a plain fp32 ONNX graph of the same shapes. Follow it with
``quantize_static`` (per-channel) to get the int8 artifact. With ``reduce_range`` (by
default where ``quantize_static`` uses it: x86 without VNNI) the weight grid is ORT's
7-bit one, [-64, 64] with scale ``max|w| / 64``.

Per-channel weight rounding commutes with folding a following BatchNorm into the
conv (folding scales each output channel), so the grid seen in training is the
grid ORT uses on the folded graph. Layers with weights that are neither
Conv/Linear nor BatchNorm (e.g. ConvTranspose, Embedding, recurrent layers) are
reported by name and trained without fake quantization.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.ao.quantization as tq
from torch import nn
from torch.nn.utils import parametrize

from edgeintel.errors import ConfigError
from edgeintel.inference.base import (
    CompressContext,
    FinetuneMixin,
    StageKind,
    TorchStage,
    check_reduce_range,
    clone_model,
    finetune,
    reduce_range_here,
    register_technique,
    set_submodule,
)

__all__ = [
    "QATConfig",
    "WeightFakeQuant",
    "fake_quant_weight",
    "prepare_qat",
    "qat_finetune",
    "strip_qat",
]

_QUANT = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_NO_WEIGHTS_TO_QUANTIZE = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.PReLU,
)


@dataclass(frozen=True)
class QATConfig(FinetuneMixin):
    """QAT: ``finetune_epochs`` (>= 1) Adam epochs at ``lr`` with int8 fake quantization.

    ``per_channel`` rounds weights per output channel (match ``quantize_static``'s
    ``per_channel``); ``activations`` also fake-quantizes Conv/Linear inputs to uint8;
    ``reduce_range`` trains on 7-bit weights (match ``quantize_static``'s; None: the same
    default, 7 bits where this CPU's int8 kernels saturate).
    """

    finetune_epochs: int = 2
    lr: float = 2e-4
    per_channel: bool = True
    activations: bool = True
    reduce_range: bool | None = None

    @property
    def weight_qmax(self) -> int:
        """The largest weight level: 127, or 64 on ORT's reduced (7-bit) range."""
        return 64 if reduce_range_here(self.reduce_range) else 127

    def __post_init__(self) -> None:
        self._check_finetune()
        if self.finetune_epochs < 1:
            raise ConfigError(f"finetune_epochs must be >= 1 for QAT, got {self.finetune_epochs}")
        for name in ("per_channel", "activations"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        check_reduce_range(self.reduce_range)


def fake_quant_weight(w: torch.Tensor, per_channel: bool = True, qmax: int = 127) -> torch.Tensor:
    """``w`` rounded to the symmetric int8 grid (per output channel or per tensor), with STE.

    Scale is ``max|w| / qmax`` (zero point 0, range [-qmax, qmax]: 127, or 64 for ORT's
    7-bit weights); the gradient passes through unchanged (nothing is clipped since the
    scale covers the range).
    """
    flat = w.detach().reshape(w.shape[0], -1).abs()
    if per_channel:
        scale = (flat.amax(dim=1) / qmax).clamp_min(1e-12).to(torch.float32)
        zp = torch.zeros(w.shape[0], dtype=torch.int32, device=w.device)
        return torch.fake_quantize_per_channel_affine(w, scale, zp, 0, -qmax, qmax)
    scale_t = float(flat.max().clamp_min(1e-12)) / qmax
    return torch.fake_quantize_per_tensor_affine(w, scale_t, 0, -qmax, qmax)


class WeightFakeQuant(nn.Module):
    """Parametrization rounding a weight to the int8 grid in the forward pass (STE backward)."""

    def __init__(self, per_channel: bool = True, qmax: int = 127) -> None:
        super().__init__()
        self.per_channel, self.qmax = per_channel, qmax

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return fake_quant_weight(w, self.per_channel, self.qmax)


class _InputFakeQuant(nn.Module):
    """``layer`` preceded by a per-tensor uint8 activation fake quantizer (temporary wrapper)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.input_fq = tq.FakeQuantize(
            observer=tq.MovingAverageMinMaxObserver,
            quant_min=0,
            quant_max=255,
            dtype=torch.quint8,
            qscheme=torch.per_tensor_affine,
        )
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(self.input_fq(x))


def prepare_qat(model: nn.Module, config: QATConfig) -> tuple[nn.Module, list[str], list[str]]:
    """A copy of ``model`` with fake quantization inserted; returns it, the layers
    prepared and warnings naming weighted layers left without fake quantization."""
    model = clone_model(model)
    done: list[str] = []
    warns: list[str] = []
    m: Any
    for name, m in list(model.named_modules()):
        if not name:
            continue
        if isinstance(m, _QUANT):
            if parametrize.is_parametrized(m, "weight"):
                warns.append(f"{name} ({type(m).__name__}): weight already parametrized; kept")
                continue
            fq = WeightFakeQuant(config.per_channel, config.weight_qmax)
            parametrize.register_parametrization(m, "weight", fq)
            if config.activations:
                set_submodule(model, name, _InputFakeQuant(m))
            done.append(name)
        elif not isinstance(m, _NO_WEIGHTS_TO_QUANTIZE) and any(
            p.numel() > 1 for p in m.parameters(recurse=False)
        ):
            warns.append(
                f"{name} ({type(m).__name__}): no fake quantization for this layer; "
                "fine-tuned in float32"
            )
    return model, done, warns


def strip_qat(model: nn.Module) -> nn.Module:
    """Remove fake quantization in place, keeping the float weights; returns ``model`` in eval."""
    for name, m in list(model.named_modules()):
        if isinstance(m, _InputFakeQuant):
            set_submodule(model, name, m.layer)
    for m in model.modules():
        if parametrize.is_parametrized(m, "weight"):
            plist: Any = m.parametrizations["weight"]  # type: ignore[index]
            if all(isinstance(p, WeightFakeQuant) for p in plist):
                parametrize.remove_parametrizations(m, "weight", leave_parametrized=False)
    model.eval()
    return model


def qat_finetune(
    model: nn.Module, config: QATConfig, ctx: CompressContext
) -> tuple[nn.Module, list[str], dict[str, Any]]:
    """A copy of ``model`` fine-tuned with fake quantization, then stripped back to float32.

    Under a federated finetuner (``ctx.finetuner``) only weights are fake-quantized: the
    activation quantizers' moving-average ranges are per-device running state that the
    engine cannot average; the int8 activation ranges then come from ``quantize_static``'s
    calibration on the server-held set.
    """
    federated = ctx.finetuner is not None and config.activations
    if federated:
        config = dataclasses.replace(config, activations=False)
    prepared, done, warns = prepare_qat(model, config)
    if federated:
        warns.append(
            "federated fine-tuning: activations not fake-quantized (moving-average ranges "
            "are per-device state); weights are"
        )
    losses = finetune(prepared, config, ctx) if done else []
    return strip_qat(prepared), warns, {"layers": done, "finetune_loss": losses}


@register_technique("qat", QATConfig, StageKind.TORCH)
def _qat(model: nn.Module, config: QATConfig, ctx: CompressContext) -> TorchStage:
    """Quantization-aware int8 fine-tuning; exports fp32, follow with quantize_static."""
    new, warns, info = qat_finetune(model, config, ctx)
    return TorchStage(new, warns, info)
