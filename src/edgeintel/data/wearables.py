"""Real wearable datasets for health monitoring, read from registry packages.

* ``watch_exercises`` (activity recognition): the smartwatch recordings that seglearn
  ships (Burns et al. 2018, "Shoulder physiotherapy exercise recognition", arXiv
  1802.01489): 10 subjects each performed 7 shoulder physiotherapy exercises with
  both arms, 20 repetitions per set, wearing an Apple Watch whose accelerometer and
  gyroscope were read at 50 Hz (140 recordings, 81 minutes). The recordings are cut
  into 2 s windows every 0.48 s at 25 Hz; ``groups`` holds the subject, so the
  default split holds out whole subjects.

Nothing is downloaded: the loader reads the file inside the installed package (the
``datasets`` extra) and names the extra when it is missing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeintel.data.datasets import DATASETS, Dataset, Modality
from edgeintel.data.sensing import package_data
from edgeintel.errors import DataError

__all__ = ["WATCH_CHANNELS", "WATCH_EXERCISES", "watch_windows"]

WATCH_CHANNELS = ("acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z")
"""Accelerometer (g) and gyroscope (rad/s) axes, in the file's order (ax..az, wx..wz)."""

WATCH_EXERCISES = (
    "pendulum",
    "abduction",
    "forward_elevation",
    "internal_rotation",
    "external_rotation",
    "lower_trapezius",
    "bent_over_row",
)
"""The 7 exercises, in the file's label order (PEN, ABD, FEL, IR, ER, TRAP, ROW)."""

RAW_HZ = 50.0
DECIMATE = 2  # 50 Hz -> 25 Hz: arm motions of a physiotherapy set lie well below 12 Hz
WINDOW = 50  # samples at 25 Hz = 2 s
STRIDE = 12  # samples at 25 Hz = 0.48 s


def watch_windows(
    recording: np.ndarray, decimate: int = DECIMATE, window: int = WINDOW, stride: int = STRIDE
) -> np.ndarray:
    """Windows of one recording ``(T, C)`` at ``RAW_HZ``: averaged over ``decimate``
    samples (a boxcar low-pass), then cut every ``stride`` samples into ``(C, window)``.

    Returns float32 ``(N, C, window)``; a recording shorter than one window gives none.
    """
    rec = np.asarray(recording, dtype=np.float64)
    t = len(rec) // decimate
    low = rec[: t * decimate].reshape(t, decimate, rec.shape[1]).mean(axis=1)
    if t < window:
        return np.zeros((0, rec.shape[1], window), dtype=np.float32)
    starts = np.arange(0, t - window + 1, stride)
    idx = starts[:, None] + np.arange(window)[None, :]
    return low[idx].transpose(0, 2, 1).astype(np.float32)


@DATASETS.register("watch_exercises")
def _watch_exercises(**_: Any) -> Dataset:
    path = package_data("seglearn", "data", "watch_dataset.npy", what="dataset 'watch_exercises'")
    raw = np.load(path, allow_pickle=True).item()  # a dict of arrays (the package's own file)
    if list(raw.get("X_labels", [])) != ["ax", "ay", "az", "wx", "wy", "wz"]:
        raise DataError(f"{path}: expected channels ax..wz, got {raw.get('X_labels')}")
    xs, ys, subjects = [], [], []
    for rec, label, subject in zip(raw["X"], raw["y"], raw["subject"], strict=True):
        w = watch_windows(rec)
        xs.append(w)
        ys.append(np.full(len(w), int(label)))
        subjects.append(np.full(len(w), int(subject)))
    groups = np.concatenate(subjects)
    return Dataset(
        name="watch_exercises",
        x=np.concatenate(xs),
        y=np.concatenate(ys),
        classes=list(WATCH_EXERCISES),
        modality=Modality.TIMESERIES,
        description="Home physiotherapy: which of 7 shoulder exercises a patient is doing, "
        f"from a smartwatch's accelerometer + gyroscope (Burns et al. 2018, "
        f"{len(np.unique(groups))} subjects, 140 recordings, shipped with seglearn); 2 s "
        "windows every 0.48 s at 25 Hz",
        sampling_rate_hz=RAW_HZ / DECIMATE,
        groups=groups,
        source="seglearn/data/watch_dataset.npy",
        extra={
            "channels": list(WATCH_CHANNELS),
            "group": "subject",
            "standardize": "per_channel",
        },
    )
