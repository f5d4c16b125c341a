"""Difference features of the redundancy filter (``caching.filter``): how far a new input
is from the last processed one, for frames (``pixel``, ``area``, ``edge``, ``hist``) and
for sensor windows and readings (``ks``, ``meanstd``, ``maxabs``); ``prepare`` makes what
they compare. ``FEATURES`` is the registry a user's own feature joins.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgeintel.errors import DataError
from edgeintel.registry import Registry

__all__ = ["FEATURES", "FRAME_FEATURES", "SENSOR_FEATURES", "Feature", "prepare"]

Feature = Callable[[np.ndarray, np.ndarray], float]
FEATURES: Registry[Feature] = Registry("difference feature")
FRAME_FEATURES = ("pixel", "area", "edge", "hist")
SENSOR_FEATURES = ("ks", "meanstd", "maxabs")
_PIXEL_DELTA = 21  # grey levels out of 255, Reducto's pixel threshold


def prepare(x: np.ndarray, width: int = 160) -> np.ndarray:
    """What a feature compares: a frame becomes blurred grey uint8 at most ``width`` px wide.

    ``x`` is an (H, W, 3) uint8 BGR frame, an (H, W) uint8 grey frame, or a
    (3, H, W) / (1, H, W) float frame in [0, 1] (``data.frame_stream``, image
    datasets); a sensor window (C, L)
    of floats is returned unchanged as float64.
    """
    import cv2

    if x.ndim == 2 and x.dtype != np.uint8:
        return np.asarray(x, dtype=np.float64)  # sensor window (C, L)
    if x.ndim == 3 and x.shape[0] in (1, 3) and x.dtype != np.uint8:
        img: np.ndarray = (np.clip(x.transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8)
        x = img[..., 0] if x.shape[0] == 1 else np.ascontiguousarray(img[..., ::-1])
    if x.ndim == 3:
        x = cv2.cvtColor(np.ascontiguousarray(x), cv2.COLOR_BGR2GRAY)
    if x.ndim != 2:
        raise DataError(f"a frame must be (H, W), (H, W, 3) or (3, H, W); got shape {x.shape}")
    if x.shape[1] > width:
        h = max(1, round(x.shape[0] * width / x.shape[1]))
        x = cv2.resize(x, (width, h), interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(x, (5, 5), 0)


@FEATURES.register("pixel")
def pixel_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of pixels whose grey level differs by more than 21 (of 255)."""
    import cv2

    return float(np.count_nonzero(cv2.absdiff(a, b) > _PIXEL_DELTA)) / a.size


@FEATURES.register("area")
def area_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of the frame inside changed regions (thresholded, dilated, filled contours)."""
    import cv2

    mask: np.ndarray = (cv2.absdiff(a, b) > _PIXEL_DELTA).astype(np.uint8)
    mask = cv2.dilate(mask, np.ones((3, 3), np.uint8), iterations=2)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return float(sum(cv2.contourArea(c) for c in contours)) / a.size


@FEATURES.register("edge")
def edge_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of pixels that are a Canny edge in exactly one of the two frames."""
    import cv2

    return float(np.count_nonzero(cv2.Canny(a, 50, 150) != cv2.Canny(b, 50, 150))) / a.size


@FEATURES.register("hist")
def hist_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya distance (0 = same, 1 = disjoint) of 32-bin grey histograms."""
    import cv2

    ha = cv2.calcHist([a], [0], None, [32], [0, 256])
    hb = cv2.calcHist([b], [0], None, [32], [0, 256])
    return float(cv2.compareHist(ha, hb, cv2.HISTCMP_BHATTACHARYYA))


@FEATURES.register("ks")
def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Largest per-channel two-sample Kolmogorov-Smirnov statistic of two (C, L) windows."""
    if a.shape[0] != b.shape[0]:
        raise DataError(f"windows have {a.shape[0]} and {b.shape[0]} channels")
    sa, sb = np.sort(a, axis=1), np.sort(b, axis=1)
    grid = np.concatenate([sa, sb], axis=1)
    ca = np.stack([np.searchsorted(sa[c], grid[c], side="right") for c in range(len(a))])
    cb = np.stack([np.searchsorted(sb[c], grid[c], side="right") for c in range(len(b))])
    return float(np.abs(ca / a.shape[1] - cb / b.shape[1]).max())


@FEATURES.register("maxabs")
def maxabs_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Largest absolute change of any single value (channel, sample), in the input's units."""
    return float(np.abs(a - b).max())


@FEATURES.register("meanstd")
def meanstd_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Largest per-channel |d mean| + |d std|, in units of the pooled standard deviation."""
    sd = np.sqrt((a.var(axis=1) + b.var(axis=1)) / 2) + 1e-6
    d = np.abs(a.mean(axis=1) - b.mean(axis=1)) + np.abs(a.std(axis=1) - b.std(axis=1))
    return float((d / sd).max())
