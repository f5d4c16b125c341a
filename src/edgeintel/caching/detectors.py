"""Per-frame reference models for the frame filter: OpenCV's classical object counters.

Reducto measures filtering against counting queries; these are the same
kind of query with detectors that ship inside ``opencv-python-headless<5``
(no weights to download): the Haar frontal-face cascade and the HOG + linear
SVM people detector. A detector's output on a frame is the number of objects.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgeintel.errors import ConfigError, DataError
from edgeintel.registry import Registry

__all__ = ["COUNTERS", "ObjectCounter", "read_frames"]


class ObjectCounter:
    """Counts objects in a BGR uint8 frame; frames wider than ``width`` px are downscaled."""

    name = "base"

    def __init__(self, width: int = 320) -> None:
        import cv2

        cv2.setNumThreads(1)
        self.width = width

    def _grey(self, frame: np.ndarray) -> np.ndarray:
        import cv2

        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise DataError(f"a detector needs an (H, W, 3) uint8 BGR frame, got {frame.shape}")
        if frame.shape[1] > self.width:
            h = round(frame.shape[0] * self.width / frame.shape[1])
            frame = cv2.resize(frame, (self.width, h), interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)

    def __call__(self, frame: np.ndarray) -> int:
        raise NotImplementedError


COUNTERS: Registry[type[ObjectCounter]] = Registry("object counter")


@COUNTERS.register("faces")
class FaceCounter(ObjectCounter):
    """Haar cascade frontal faces (scale step 1.1, 5 neighbours)."""

    name = "faces"

    def __init__(self, width: int = 320, min_neighbors: int = 5) -> None:
        import cv2

        super().__init__(width)
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"  # type: ignore[attr-defined]
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise ConfigError(f"cannot load the Haar cascade {path}")
        self.min_neighbors = min_neighbors

    def __call__(self, frame: np.ndarray) -> int:
        found = self._cascade.detectMultiScale(self._grey(frame), 1.1, self.min_neighbors)
        return len(found)


@COUNTERS.register("people")
class PeopleCounter(ObjectCounter):
    """HOG + linear SVM pedestrians (OpenCV's default people detector, stride 8 px)."""

    name = "people"

    def __init__(self, width: int = 320) -> None:
        import cv2

        super().__init__(width)
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())  # type: ignore[attr-defined]

    def __call__(self, frame: np.ndarray) -> int:
        grey = self._grey(frame)
        win_w, win_h = self._hog.winSize
        if grey.shape[0] < win_h or grey.shape[1] < win_w:
            return 0  # smaller than one detection window (OpenCV would crash on it)
        rects, _ = self._hog.detectMultiScale(grey, winStride=(8, 8))
        return len(rects)


def read_frames(path: str | Path, max_frames: int | None = None) -> Iterator[Any]:
    """Raw BGR uint8 frames of a video file in order (OpenCV decoder)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DataError(f"{path}: cannot open video")
    try:
        n = 0
        while max_frames is None or n < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            yield frame
            n += 1
    finally:
        cap.release()
