"""Streams replay data at its real rate: windows and frames carry correct timestamps."""

from __future__ import annotations

import numpy as np
import pytest

from edgeintel.data import frame_stream, sensor_stream, sliding_windows, video_path
from edgeintel.errors import ConfigError


def test_sliding_windows_hand_computed() -> None:
    sig = np.arange(10).reshape(1, 10)
    w = sliding_windows(sig, size=4, hop=3)
    assert w.shape == (3, 1, 4)
    assert w[:, 0].tolist() == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]


def test_sensor_stream_timestamps_follow_rate() -> None:
    rec = np.arange(2 * 2 * 50, dtype=np.float32).reshape(2, 2, 50)  # 2 recordings of 5 s @ 10 Hz
    wins = list(sensor_stream(rec, rate_hz=10.0, window_s=2.0, hop_s=1.0))
    assert len(wins) == 9  # 100 samples, windows of 20 every 10
    assert [w.t_s for w in wins[:3]] == [0.0, 1.0, 2.0]
    assert wins[5].data.shape == (2, 20)
    # the window at t=4 s spans the boundary between the two recordings
    assert wins[4].data[0, 9] == rec[0, 0, 49] and wins[4].data[0, 10] == rec[1, 0, 0]


def test_bad_window() -> None:
    with pytest.raises(ConfigError, match="rate_hz must be > 0"):
        list(sensor_stream(np.zeros((1, 1, 10)), rate_hz=0, window_s=1, hop_s=1))
    with pytest.raises(ConfigError, match="window size and hop must be >= 1"):
        sliding_windows(np.zeros((1, 10)), 0, 1)


def test_frame_stream_at_clip_fps() -> None:
    frames = list(frame_stream(video_path("carphone_pristine.mp4"), size=16, every=10))
    assert len(frames) == 12  # 120 frames, every 10th
    assert frames[0].image.shape == (3, 16, 16)
    assert frames[1].t_s == pytest.approx(10 / 29.97, rel=1e-3)
    assert frames[3].image.min() >= 0.0 and frames[3].image.max() <= 1.0
