"""Fashion-MNIST product photos, read from Debian's ``dataset-fashion-mnist`` package.

* ``fashion_mnist`` (image classification): Zalando's 70,000 product photos (Xiao et
  al. 2017, MIT licence), 28x28 grey, 10 product categories, as the Debian package
  installs them under ``/usr/share/datasets/fashion-mnist`` (IDX files, gzip). Harder
  than digits: a 1-nearest-neighbour lookup gets about 0.85 on the full training set,
  a small CNN about 0.90-0.92.

Nothing is downloaded at run time: ``make fashion-mnist`` (a prerequisite of
``make test``) installs the package with apt; a missing file is a one-line DataError.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np

from edgeintel.data.datasets import DATASETS, Dataset, Modality
from edgeintel.errors import DataError

__all__ = ["FASHION_CLASSES", "FASHION_DIR", "read_idx"]

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's dataset-fashion-mnist package installs the IDX files."""

FASHION_CLASSES = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle_boot",
)

_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_IDX_TYPES = {0x08: np.uint8}


def read_idx(path: Path) -> np.ndarray:
    """An IDX array (LeCun's MNIST format: magic ``0 0 type ndim``, big-endian uint32
    dimensions, then the values), gzip-compressed or not; only unsigned bytes."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(np.int64)
    start = 4 + 4 * ndim
    if len(raw) - start != int(np.prod(dims)):
        raise DataError(f"{path}: {len(raw) - start} values for dimensions {dims.tolist()}")
    return np.frombuffer(raw, dtype=np.uint8, offset=start).reshape(tuple(dims))


def _resize(x: np.ndarray, size: int) -> np.ndarray:
    import cv2

    return np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in x])


@DATASETS.register("fashion_mnist")
def _fashion_mnist(image_size: int = 28, root: Path = FASHION_DIR, **_: Any) -> Dataset:
    xs, ys = [], []
    for part, (images, labels) in _FILES.items():
        paths = [root / images, root / labels]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise DataError(
                f"dataset 'fashion_mnist' needs Debian's dataset-fashion-mnist package "
                f"({missing[0]} not found): apt-get install dataset-fashion-mnist "
                "(or make fashion-mnist)"
            )
        x, y = read_idx(paths[0]), read_idx(paths[1])
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"{root}: {part} images {x.shape} do not match labels {y.shape}")
        xs.append(x)
        ys.append(y)
    x = np.concatenate(xs)
    if image_size != x.shape[1]:
        x = _resize(x, image_size)
    return Dataset(
        name="fashion_mnist",
        x=(x.astype(np.float32) / 255.0)[:, None, :, :],
        y=np.concatenate(ys).astype(np.int64),
        classes=list(FASHION_CLASSES),
        modality=Modality.IMAGE,
        description="Fashion-MNIST: 70,000 real Zalando product photos in 10 categories, "
        f"grey, {image_size}x{image_size} (Debian package dataset-fashion-mnist)",
        source=str(root),
        extra={"official_test": "the last 10,000 samples (t10k)"},
    )
