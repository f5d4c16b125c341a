"""Fashion-MNIST from Debian's dataset-fashion-mnist: the IDX reader and the loader."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from edgeintel.data import load_dataset
from edgeintel.data.fashion import FASHION_DIR, read_idx
from edgeintel.errors import DataError


def _idx(path: Path, a: np.ndarray) -> Path:
    head = bytes([0, 0, 0x08, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    with gzip.open(path, "wb") as f:
        f.write(head + a.astype(np.uint8).tobytes())
    return path


def test_read_idx_round_trip_and_bad_files(tmp_path: Path) -> None:
    a = np.arange(24).reshape(2, 3, 4)
    np.testing.assert_array_equal(read_idx(_idx(tmp_path / "a.gz", a)), a)
    (tmp_path / "bad").write_bytes(b"\x00\x00\x0d\x01\x00\x00\x00\x01\x00")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 5) + b"ab")
    with pytest.raises(DataError, match="2 values for dimensions"):
        read_idx(tmp_path / "short")


def test_missing_package_is_one_line(tmp_path: Path) -> None:
    from edgeintel.data.datasets import DATASETS

    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        DATASETS.get("fashion_mnist")(root=tmp_path)


@pytest.mark.skipif(
    not (FASHION_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="Debian's dataset-fashion-mnist is not installed (make fashion-mnist)",
)
def test_fashion_mnist_loads_70000_photos() -> None:
    ds = load_dataset("fashion_mnist", image_size=28)
    assert len(ds) == 70_000 and ds.sample_shape == (1, 28, 28)
    assert np.bincount(ds.y).tolist() == [7000] * 10
    assert ds.x.min() >= 0.0 and ds.x.max() <= 1.0
