"""Bundled datasets load offline with the right shapes; user files load or fail clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edgeintel.data import DATASETS, Modality, load_dataset, load_file
from edgeintel.errors import ConfigError, DataError

EXPECTED = {
    "digits": ((1797,), (1, 8, 8), 10, Modality.IMAGE),
    "mnist": ((5000,), (1, 28, 28), 10, Modality.IMAGE),
    "basic_motions": ((80,), (6, 100), 4, Modality.TIMESERIES),
    "acsf1": ((200,), (1, 1460), 10, Modality.TIMESERIES),
    "video_scenes": ((502,), (3, 32, 32), 3, Modality.IMAGE),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bundled_dataset_shapes(name: str) -> None:
    (n,), shape, n_classes, modality = EXPECTED[name]
    ds = load_dataset(name)
    assert len(ds) == n and ds.sample_shape == shape
    assert ds.num_classes == n_classes and ds.modality == modality
    assert ds.x.dtype == np.float32 and ds.y.dtype == np.int64
    assert set(np.unique(ds.y)) == set(range(n_classes))  # every class present
    assert np.isfinite(ds.x).all()


def test_registry_lists_all_bundled() -> None:
    assert set(EXPECTED) <= set(DATASETS.names())


def test_metadata_rates_and_groups() -> None:
    assert load_dataset("basic_motions").sampling_rate_hz == 10.0
    video = load_dataset("video_scenes", image_size=16)
    assert video.sample_shape == (3, 16, 16)
    assert video.fps is not None and 24 < video.fps < 31
    assert video.groups is not None and len(np.unique(video.groups)) == 3


def test_unknown_dataset() -> None:
    with pytest.raises(ConfigError, match="unknown dataset 'cifar'; expected one of"):
        load_dataset("cifar")


def test_npz_file(tmp_path: Path) -> None:
    p = tmp_path / "d.npz"
    np.savez(p, x=np.random.default_rng(0).normal(size=(20, 3, 16)), y=np.array(["a", "b"] * 10))
    ds = load_file(p)
    assert ds.sample_shape == (3, 16) and ds.classes == ["a", "b"] and len(ds) == 20


def test_csv_and_parquet_with_label_column(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "f1": np.arange(12.0),
            "f2": np.arange(12.0) * 2,
            "kind": ["ok", "fault", "ok"] * 4,
            "machine": [1, 2] * 6,
        }
    )
    df.to_csv(tmp_path / "d.csv", index=False)
    df.to_parquet(tmp_path / "d.parquet")
    for name in ("d.csv", "d.parquet"):
        ds = load_file(tmp_path / name, label_column="kind", group_column="machine")
        assert ds.sample_shape == (1, 2) and ds.classes == ["fault", "ok"]
        assert ds.groups is not None and len(np.unique(ds.groups)) == 2
        assert np.allclose(ds.x[:, 0, 1], df.f2.to_numpy())


def test_image_folder(tmp_path: Path) -> None:
    import cv2

    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            cv2.imwrite(str(tmp_path / cls / f"{i}.png"), np.full((10, 12, 3), 40 * i, np.uint8))
    ds = load_file(tmp_path, image_size=8)
    assert ds.sample_shape == (3, 8, 8) and ds.classes == ["cat", "dog"] and len(ds) == 6


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.csv", "data file not found"),
        (lambda d: _csv(d, "label"), "label column 'target' not found"),
        (lambda d: _csv(d, "target", text_feature=True), "feature column 'name' is not numeric"),
        (lambda d: _write(d / "bad.npz", b"not a zip"), "not a readable NPZ file"),
        (lambda d: _write(d / "data.txt", b"1,2"), "unsupported data file type"),
    ],
)
def test_bad_files(tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DataError, match=message):
        load_file(make(tmp_path), label_column="target")


def _csv(d: Path, label: str, text_feature: bool = False) -> Path:
    df = pd.DataFrame({"a": [1.0, 2.0], label: [0, 1]})
    if text_feature:
        df["name"] = ["x", "y"]
    df.to_csv(d / "t.csv", index=False)
    return d / "t.csv"


def _write(p: Path, data: bytes) -> Path:
    p.write_bytes(data)
    return p
