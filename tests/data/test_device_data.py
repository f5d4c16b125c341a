"""The one derivation of a run's data: roles, shards, preprocessing fitted on the right rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeintel.data import fit_standardizer, load_data
from edgeintel.data.device_data import (
    check_preprocessing,
    derive_run_data,
    input_interval_s,
    standardization_kind,
    stream_inputs,
)
from edgeintel.data.streams import dwell_stream
from edgeintel.errors import ConfigError
from edgeintel.scenario import DataSpec


@pytest.fixture(scope="module")
def wine_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scikit-learn's wine table (178 rows, 13 columns from 0.1 to 1,680) as a user CSV."""
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame.rename(columns={"target": "label"})
    path = tmp_path_factory.mktemp("csv") / "wine.csv"
    frame.to_csv(path, index=False)
    return path


def _spec(path: Path, **kw: object) -> DataSpec:
    return DataSpec.model_validate(
        {"path": str(path), "server_fraction": 0.1, "partition": {"kind": "iid"}, **kw}
    )


def test_roles_are_disjoint_and_shards_come_from_train(wine_csv: Path) -> None:
    rd = derive_run_data(_spec(wine_csv), seed=4, n_devices=3, edge=True)
    sp = rd.splits
    sets = [set(sp.train), set(sp.val), set(sp.server), set(sp.test)]
    assert all(not (a & b) for i, a in enumerate(sets) for b in sets[i + 1 :])
    assert len(rd.parts) == 3
    shards = [set(p.tolist()) for p in rd.parts]
    assert set().union(*shards) <= sets[0]  # every device sample is a training sample
    assert sum(len(s) for s in shards) == sum(len(p) for p in rd.parts)  # no sample twice
    x, y = rd.device_arrays(1)
    assert np.array_equal(x, rd.dataset.x[rd.parts[1]]) and x.dtype == np.float32
    assert np.array_equal(y, rd.dataset.y[rd.parts[1]])


@pytest.mark.parametrize("edge", [True, False])
def test_standardizer_is_fitted_on_the_fitting_partys_rows_only(wine_csv: Path, edge: bool) -> None:
    spec = _spec(wine_csv)
    rd = derive_run_data(spec, seed=4, n_devices=3, edge=edge)
    raw = load_data(spec, seed=4).x
    sp = rd.splits
    # edge training: the server-held sets; central: the training split; never test
    rows = np.sort(np.concatenate([sp.val, sp.server])) if edge else sp.train
    expected = fit_standardizer(raw[rows], "per_feature")
    assert rd.standardizer is not None and rd.standardizer.kind == "per_feature"
    assert np.array_equal(rd.standardizer.mean, expected.mean)
    assert np.array_equal(rd.standardizer.std, expected.std)
    assert np.array_equal(rd.dataset.x, expected.apply(raw))
    assert rd.preprocessing is not None and rd.preprocessing["samples"] == len(rows)
    # the fitting rows share nothing with a device's shard or the test set (edge)
    if edge:
        assert not set(rows.tolist()) & set(np.concatenate(rd.parts).tolist())
    assert not set(rows.tolist()) & set(sp.test.tolist())


def test_derivation_is_deterministic_bit_for_bit(wine_csv: Path) -> None:
    a = derive_run_data(_spec(wine_csv), seed=7, n_devices=4, edge=True)
    b = derive_run_data(_spec(wine_csv), seed=7, n_devices=4, edge=True)
    for i in range(4):
        assert a.device_arrays(i)[0].tobytes() == b.device_arrays(i)[0].tobytes()


def test_standardize_off_leaves_data_raw_and_warns_naming_columns(wine_csv: Path) -> None:
    spec = _spec(wine_csv, standardize=False)
    rd = derive_run_data(spec, seed=0, n_devices=2, edge=False)
    assert rd.standardizer is None and rd.preprocessing is None
    assert np.array_equal(rd.dataset.x, load_data(spec, seed=0).x)
    assert len(rd.warnings) == 1
    msg = rd.warnings[0]
    assert "'proline'" in msg and "very different scales" in msg and "data.standardize" in msg
    assert rd.scale is not None and rd.scale["widest"] == "proline"
    # standardised (the default): the spread is recorded, nothing left to warn about
    on = derive_run_data(_spec(wine_csv), seed=0, n_devices=2, edge=False)
    assert on.warnings == () and on.scale is not None and on.scale["ratio"] > 100


def test_kinds_by_modality() -> None:
    digits = load_data(DataSpec(dataset="digits", max_samples=100))
    assert standardization_kind(digits, True) is None  # images stay as loaded
    rd = derive_run_data(DataSpec(dataset="digits", max_samples=200), seed=0, edge=False)
    assert rd.standardizer is None and rd.scale is None and rd.parts == ()
    assert input_interval_s(rd.dataset, 20.0) == pytest.approx(0.05)


def test_check_preprocessing_refuses_a_mismatch(wine_csv: Path) -> None:
    edge = derive_run_data(_spec(wine_csv), seed=1, edge=True)
    central = derive_run_data(_spec(wine_csv), seed=1, edge=False)
    assert edge.standardizer is not None and central.standardizer is not None
    check_preprocessing(edge.preprocessing, edge.standardizer, "m.json")  # same: passes
    check_preprocessing(None, None, "m.json")
    with pytest.raises(ConfigError, match=r"m\.json: the model was trained on inputs"):
        check_preprocessing(central.preprocessing, edge.standardizer, "m.json")
    with pytest.raises(ConfigError, match="derives none"):
        check_preprocessing(edge.preprocessing, None, "m.json")


def test_time_series_user_data_is_standardised_per_channel(tmp_path: Path) -> None:
    """An NPZ of sensor windows (N, C, L): one mean/std per channel, over samples and time."""
    from sklearn.datasets import load_digits

    d = load_digits()  # real values: two 'channels' = the top and bottom image halves
    x = d.images.reshape(len(d.images), 2, 32).astype(np.float32)
    x[:, 0] *= 1000.0  # channel 0 in other units
    path = tmp_path / "windows.npz"
    np.savez(path, x=x, y=d.target)
    rd = derive_run_data(_spec(path), seed=0, n_devices=2, edge=False)
    assert rd.standardizer is not None and rd.standardizer.kind == "per_channel"
    assert rd.standardizer.mean.shape == (2,)
    train = rd.dataset.x[rd.splits.train]
    assert np.allclose(train.mean(axis=(0, 2)), 0, atol=1e-4)
    assert np.allclose(train.std(axis=(0, 2)), 1, atol=1e-3)
    off = derive_run_data(_spec(path, standardize=False), seed=0, n_devices=2, edge=False)
    assert "'channel 0'" in off.warnings[0] and "'channel 1'" in off.warnings[0]


def test_a_table_of_sensor_windows_is_standardised_per_channel(tmp_path: Path) -> None:
    """A CSV whose rows are windows (``data.shape: [C, L]``): per channel, not per cell."""
    import pandas as pd
    from sklearn.datasets import load_digits

    d = load_digits()
    frame = pd.DataFrame(d.data, columns=[f"v{i}" for i in range(64)])
    frame["label"] = d.target
    path = tmp_path / "windows.csv"
    frame.to_csv(path, index=False)
    rd = derive_run_data(_spec(path, shape=[2, 32]), seed=0, edge=False)
    assert rd.standardizer is not None and rd.standardizer.kind == "per_channel"
    flat = derive_run_data(_spec(path), seed=0, edge=False)  # plain columns: per feature
    assert flat.standardizer is not None and flat.standardizer.kind == "per_feature"
    assert flat.standardizer.mean.shape == (1, 64)


def test_a_stream_holds_each_sample_for_its_frames_with_noise() -> None:
    x = np.arange(6, dtype=np.float32).reshape(3, 1, 2)
    y = np.array([0, 1, 2])
    xs, ys = dwell_stream(x, y, frames=2, noise=0.0, seed=0)
    assert ys.tolist() == [0, 0, 1, 1, 2, 2]
    np.testing.assert_array_equal(xs[::2], x)
    np.testing.assert_array_equal(xs[1::2], x)
    noisy, _ = dwell_stream(x, y, frames=3, noise=0.1, seed=5)
    assert noisy.shape == (9, 1, 2) and 0.02 < float(np.std(noisy - np.repeat(x, 3, 0))) < 0.3
    np.testing.assert_array_equal(noisy, dwell_stream(x, y, 3, 0.1, seed=5)[0])  # by seed
    assert dwell_stream(x, y, 1, 0.0, 0)[0] is x  # the default stream is the shard itself
    # the agents' derivation: each device's shard, held and noised by its own seed
    spec = DataSpec.model_validate(
        {"dataset": "digits", "max_samples": 200, "stream": {"frames_per_sample": 4, "noise": 0.05}}
    )
    rd = derive_run_data(spec, seed=3, n_devices=2, edge=True)
    shard_x, shard_y = rd.device_arrays(1)
    sx, sy = rd.device_inputs(1)
    assert len(sx) == 4 * len(shard_x) and sy.tolist() == np.repeat(sy[::4], 4).tolist()
    np.testing.assert_array_equal(sx, stream_inputs(shard_x, shard_y, (4, 0.05, 3, True), 1)[0])
    # images arrive in a seeded random order, not the dataset's (label-sorted) storage order
    assert (
        sorted(sy[::4].tolist()) == sorted(shard_y.tolist())
        and sy[::4].tolist() != shard_y.tolist()
    )
    with pytest.raises(ConfigError, match="frames >= 1"):
        dwell_stream(x, y, 0, 0.0, 0)
