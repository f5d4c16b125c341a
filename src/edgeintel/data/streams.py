"""Replay data as a device sees it: sliding sensor windows at the real rate, video frames at fps."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeintel.errors import ConfigError, DataError
from edgeintel.extras import require

__all__ = [
    "Frame",
    "Window",
    "dwell_stream",
    "frame_stream",
    "sensor_stream",
    "sliding_windows",
    "video_fps",
]


@dataclass(frozen=True)
class Window:
    """A sensor window starting at ``t_s`` seconds; ``data`` is (channels, samples)."""

    t_s: float
    data: np.ndarray
    index: int


@dataclass(frozen=True)
class Frame:
    """A video frame shown at ``t_s`` seconds; ``image`` is (3, H, W) RGB in [0, 1]."""

    t_s: float
    image: np.ndarray
    index: int


def sliding_windows(signal: np.ndarray, size: int, hop: int) -> np.ndarray:
    """All windows of ``size`` samples every ``hop`` samples: (C, T) -> (n, C, size), a view."""
    if size < 1 or hop < 1:
        raise ConfigError(f"window size and hop must be >= 1 sample, got {size} and {hop}")
    if signal.ndim != 2:
        raise DataError(f"a sensor signal must be (channels, samples), got shape {signal.shape}")
    if signal.shape[1] < size:
        return np.empty((0, signal.shape[0], size), dtype=signal.dtype)
    view = np.lib.stride_tricks.sliding_window_view(signal, size, axis=1)  # (C, n_all, size)
    return view[:, ::hop, :].transpose(1, 0, 2)


def sensor_stream(
    recordings: np.ndarray, rate_hz: float, window_s: float, hop_s: float
) -> Iterator[Window]:
    """Concatenate recordings (N, C, L) into one signal and yield windows in time order.

    Window ``k`` starts at ``k * hop_s`` seconds; a window is as long as
    ``window_s`` seconds at the signal's sampling rate ``rate_hz``.
    """
    if rate_hz <= 0:
        raise ConfigError(f"rate_hz must be > 0, got {rate_hz}")
    size = round(window_s * rate_hz)
    hop = round(hop_s * rate_hz)
    signal = np.concatenate(list(recordings), axis=1) if recordings.ndim == 3 else recordings
    for k, w in enumerate(sliding_windows(signal, size, hop)):
        yield Window(t_s=k * hop / rate_hz, data=w, index=k)


def video_fps(path: str | Path) -> float:
    """Frame rate of a video file in frames per second (25 if the container has none)."""
    cv2 = require("cv2", "reading video")

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DataError(f"{path}: cannot open video")
    fps = float(cap.get(cv2.CAP_PROP_FPS)) or 25.0
    cap.release()
    return fps


def frame_stream(path: str | Path, size: int = 32, every: int = 1) -> Iterator[Frame]:
    """Decode a video with OpenCV and yield frames (resized RGB) stamped at the clip's fps."""
    cv2 = require("cv2", "reading video")

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DataError(f"{path}: cannot open video")
    fps = float(cap.get(cv2.CAP_PROP_FPS)) or 25.0
    i = 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if i % every == 0:
                small = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
                rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
                yield Frame(t_s=i / fps, image=rgb.transpose(2, 0, 1), index=i)
            i += 1
    finally:
        cap.release()


def dwell_stream(
    x: np.ndarray, y: np.ndarray, frames: int, noise: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each sample held for ``frames`` consecutive inputs, every copy with Gaussian sensor
    noise of standard deviation ``noise`` (data units): a camera that sees the same digit
    or display for several frames. ``frames`` 1 and ``noise`` 0 return the samples as they
    are. Deterministic in ``seed``."""
    if frames < 1 or noise < 0:
        raise ConfigError(f"a stream needs frames >= 1 and noise >= 0, got {frames} and {noise}")
    if frames == 1 and noise == 0:
        return x, y
    xs = np.repeat(np.asarray(x, dtype=np.float32), frames, axis=0)
    if noise > 0:
        rng = np.random.default_rng(seed)
        xs = xs + rng.normal(0.0, noise, size=xs.shape).astype(np.float32)
    return xs, np.repeat(np.asarray(y), frames, axis=0)
