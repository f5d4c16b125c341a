"""Keyword spotting on raw audio: log-mel features computed inside the model, then a DS-CNN.

The front end is part of the network (``LogMel``), so the device's measured latency and
energy include it and the exported ONNX graph takes raw samples: framing and the windowed
DFT are one strided ``Conv1d`` whose fixed weights are the Hann-windowed cosine and sine
rows, the power spectrum is ``re^2 + im^2``, the mel filterbank a fixed 1x1 ``Conv1d``
and then ``log``. Its weights are buffers, not parameters: training, pruning and
factorisation leave them alone.

``kws_dscnn`` follows the DS-CNN of "Hello Edge: Keyword Spotting on Microcontrollers"
(Zhang et al., 2017): a full convolution, then depthwise-separable blocks, average
pooling and a linear layer; ``width`` 16 gives 64 channels (their DS-CNN-S) and four blocks.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from edgeintel.errors import ModelError
from edgeintel.models.families import MODELS

__all__ = ["LogMel", "dft_weights", "hz_to_mel", "kws_dscnn", "mel_filterbank", "mel_to_hz"]

WINDOW_MS = 40.0
HOP_MS = 20.0
N_MELS = 40
DEFAULT_RATE_HZ = 8000.0
LOG_FLOOR = 1e-6


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """HTK mel scale: ``2595 log10(1 + f / 700)``."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    """Inverse of ``hz_to_mel`` (Hz)."""
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(
    n_mels: int, n_fft: int, rate_hz: float, fmin: float = 20.0, fmax: float | None = None
) -> np.ndarray:
    """``(n_mels, n_fft // 2 + 1)`` triangular filters, equally spaced on the HTK mel scale
    between ``fmin`` and ``fmax`` (default Nyquist) Hz, each peaking at 1 at its centre."""
    top = rate_hz / 2.0 if fmax is None else fmax
    if not 0 <= fmin < top <= rate_hz / 2.0:
        raise ModelError(f"mel band must satisfy 0 <= fmin < fmax <= {rate_hz / 2:g} Hz")
    freqs = np.arange(n_fft // 2 + 1) * rate_hz / n_fft
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(top), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rise = (freqs[None, :] - lo) / (mid - lo)
    fall = (hi - freqs[None, :]) / (hi - mid)
    return np.clip(np.minimum(rise, fall), 0.0, None)


def dft_weights(n_fft: int) -> np.ndarray:
    """``(2 * (n_fft // 2 + 1), 1, n_fft)``: Hann-windowed cosine rows, then sine rows, so a
    ``Conv1d`` with these weights computes the real and imaginary parts of each frame's DFT."""
    n = np.arange(n_fft)
    window = 0.5 - 0.5 * np.cos(2.0 * math.pi * n / n_fft)  # periodic Hann
    k = np.arange(n_fft // 2 + 1)[:, None]
    angle = 2.0 * math.pi * k * n[None, :] / n_fft
    rows = np.concatenate([np.cos(angle), -np.sin(angle)]) * window[None, :]
    return rows[:, None, :]


class LogMel(nn.Module):
    """Raw audio ``(B, 1, samples)`` -> log-mel energies ``(B, 1, n_mels, frames)``."""

    def __init__(
        self,
        rate_hz: float = DEFAULT_RATE_HZ,
        window_ms: float = WINDOW_MS,
        hop_ms: float = HOP_MS,
        n_mels: int = N_MELS,
    ) -> None:
        super().__init__()
        self.n_fft = round(rate_hz * window_ms / 1000.0)
        self.hop = round(rate_hz * hop_ms / 1000.0)
        self.bins = self.n_fft // 2 + 1
        dft = torch.tensor(dft_weights(self.n_fft), dtype=torch.float32)
        mel = mel_filterbank(n_mels, self.n_fft, rate_hz)
        self.dft: torch.Tensor
        self.mel: torch.Tensor
        self.register_buffer("dft", dft)
        self.register_buffer("mel", torch.tensor(mel[:, :, None], dtype=torch.float32))

    def frames(self, samples: int) -> int:
        """Frames of a clip of ``samples`` samples."""
        return 1 + (samples - self.n_fft) // self.hop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = F.conv1d(x, self.dft, stride=self.hop)
        re, im = spec[:, : self.bins], spec[:, self.bins :]
        power = re * re + im * im
        mel = F.conv1d(power, self.mel)
        return torch.log(mel + LOG_FLOOR).unsqueeze(1)


def _ds_block(c: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(c, c, 3, stride=stride, padding=1, groups=c, bias=False),
        nn.BatchNorm2d(c),
        nn.ReLU(),
        nn.Conv2d(c, c, 1, bias=False),
        nn.BatchNorm2d(c),
        nn.ReLU(),
    ]


@MODELS.register("kws_dscnn")
def kws_dscnn(
    input_shape: tuple[int, ...],
    num_classes: int,
    width: int = 16,
    sample_rate_hz: float | None = None,
) -> nn.Sequential:
    """DS-CNN keyword spotter on raw mono audio ``(1, samples)`` at ``sample_rate_hz``
    (8 kHz when not given): log-mel front end (40 ms windows, 20 ms hop, 40 mel bands),
    a 5x5 stride-2 convolution of ``4 * width`` channels, four depthwise-separable blocks
    (the first of stride 2), global average pooling and a linear layer."""
    if len(input_shape) != 2 or int(input_shape[0]) != 1:
        raise ModelError(
            f"kws_dscnn takes mono audio shaped (1, samples), got {tuple(input_shape)}"
        )
    rate = float(sample_rate_hz or DEFAULT_RATE_HZ)
    front = LogMel(rate)
    if front.frames(int(input_shape[1])) < 4:
        raise ModelError(
            f"kws_dscnn needs clips of at least {front.n_fft + 3 * front.hop} samples "
            f"({(front.n_fft + 3 * front.hop) / rate * 1000:.0f} ms at {rate:g} Hz), "
            f"got {input_shape[1]}"
        )
    c = 4 * width
    layers: list[nn.Module] = [
        front,
        nn.BatchNorm2d(1),  # learns the log-mel scale (level and spread of the energies)
        nn.Conv2d(1, c, 5, stride=2, padding=2, bias=False),
        nn.BatchNorm2d(c),
        nn.ReLU(),
    ]
    for k in range(4):  # the first block halves the grid again (Hello Edge's ~125 positions)
        layers += _ds_block(c, stride=2 if k == 0 else 1)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)]
    return nn.Sequential(*layers)
