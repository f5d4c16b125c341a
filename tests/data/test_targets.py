"""Real-valued and anomaly targets: the Dataset, user files, the one derivation, solar_sites."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from edgeintel.data import Dataset, Modality, Target, load_dataset, load_file
from edgeintel.data.datasets import load_data, value_strata
from edgeintel.data.device_data import derive_run_data
from edgeintel.data.sensing import SOLAR_CHANNELS, solar_windows
from edgeintel.errors import DataError
from edgeintel.scenario import DataSpec


def test_value_strata_are_quantile_bins() -> None:
    y = np.arange(10, dtype=np.float32)  # quintile edges at 1.8, 3.6, 5.4, 7.2
    assert value_strata(y).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert value_strata(np.zeros(6)).tolist() == [0] * 6  # ties share one stratum
    assert value_strata(np.c_[y, -y]).tolist() == value_strata(y).tolist()  # first column


def test_dataset_targets_checked() -> None:
    x = np.zeros((4, 1, 3))
    ds = Dataset("v", x, [0.5, 1.5, 2.5, 3.5], ["t"], Modality.TABULAR, target=Target.VALUE)
    assert ds.y.dtype == np.float32 and ds.summary()["target_stats"]["mean"] == 2.0
    assert ds.strata.dtype == np.int64 and ds.subset(np.array([1, 2])).target is Target.VALUE
    with pytest.raises(DataError, match="finite"):
        Dataset("v", x, [0, np.nan, 1, 2], ["t"], Modality.TABULAR, target=Target.VALUE)
    with pytest.raises(DataError, match="anomaly labels are 0 = normal"):
        Dataset("a", x, [0, 1, 0, 1], ["ok", "bad"], Modality.TABULAR, target=Target.ANOMALY)
    a = Dataset("a", x, [0, 1, 0, 0], ["normal", "anomaly"], Modality.TABULAR, target="anomaly")
    assert a.summary()["class_counts"] == [3, 1]


def test_user_files_read_as_the_kind_needs(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    pd.DataFrame(
        {"a": [1.0, 2, 3, 4], "b": [0.0, 1, 0, 1], "label": [0.25, 1.5, -2.0, 3.0]}
    ).to_csv(path, index=False)
    ds = load_file(path, target=Target.VALUE)
    assert ds.y.tolist() == [0.25, 1.5, -2.0, 3.0] and ds.classes == ["label"]
    with pytest.raises(DataError, match="class ids"):
        load_file(path)  # fractional labels are not class ids
    flags = tmp_path / "f.csv"
    pd.DataFrame({"a": [1.0, 2, 3], "label": ["normal", "leak", "normal"]}).to_csv(flags)
    an = load_file(flags, target=Target.ANOMALY)
    assert an.y.tolist() == [0, 1, 0] and an.classes == ["normal", "anomaly"]
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"a": [1.0, 2], "label": [1.0, None]}).to_csv(bad, index=False)
    with pytest.raises(DataError, match="missing or not finite"):
        load_file(bad, target=Target.VALUE)


def _spec(**fields: Any) -> DataSpec:
    return DataSpec.model_validate(fields)


def test_kind_and_dataset_target_must_match() -> None:
    with pytest.raises(DataError, match="holds class labels, but the regression task kind"):
        load_data(_spec(dataset="digits"), kind="regression")
    # class labels read for anomaly detection: the first class is normal, the rest anomalies
    digits = load_data(_spec(dataset="digits"), kind="anomaly")
    assert digits.target is Target.ANOMALY and digits.extra["normal_class"] == "0"
    assert int((digits.y == 0).sum()) == 178 and len(digits) == 1797


def test_anomaly_training_split_keeps_normal_samples_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 2, 8)).astype(np.float32)
    y = (rng.random(300) < 0.1).astype(int)
    np.savez(tmp_path / "a.npz", x=x, y=y)
    spec = _spec(path=str(tmp_path / "a.npz"), partition={"kind": "iid"})
    rd = derive_run_data(spec, 3, 4, edge=True, kind="anomaly")
    ds, sp = rd.dataset, rd.splits
    assert (ds.y[sp.train] == 0).all() and sp.anomalies_excluded > 0
    assert (ds.y[sp.test] == 1).any() and (ds.y[sp.val] == 1).any()  # held out: both kinds
    assert sp.to_json()["anomalies_excluded_from_training"] == sp.anomalies_excluded
    assert all((ds.y[p] == 0).all() for p in rd.parts)
    # the same file as a two-class problem keeps the anomalies in training
    plain = derive_run_data(spec, 3, 4, edge=True, kind="classification")
    assert (plain.dataset.y[plain.splits.train] == 1).any()
    no_normal = tmp_path / "n.npz"
    np.savez(no_normal, x=x[:5], y=np.ones(5, dtype=int))
    with pytest.raises(DataError, match="no sample is labelled normal"):
        load_data(_spec(path=str(no_normal)), kind="anomaly")


def test_solar_windows_by_hand() -> None:
    hours = 30
    hourly = np.zeros((hours, len(SOLAR_CHANNELS)))
    hourly[:, 0] = np.arange(hours) * 10.0  # ghi, W/m^2
    hourly[:, 3] = [0.0] * 25 + [100.0] * 5  # extraterrestrial: sun up from hour 25
    x, y, target_hour = solar_windows(hourly, window=24)
    # forecast hours 25..29 have the sun up (and a full day of readings before them)
    assert target_hour.tolist() == [25, 26, 27, 28, 29]
    assert np.allclose(y, np.array([250, 260, 270, 280, 290]) / 1000)
    assert x.shape == (5, len(SOLAR_CHANNELS), 24)
    assert x[0, 0, -1] == 240.0  # the last reading is the hour before the forecast hour
    assert x[0, 3, -1] == 100.0 and x[0, 3, -2] == 0.0  # extraterrestrial one hour ahead


def test_solar_sites_loads_and_splits_deterministically() -> None:
    ds = load_dataset("solar_sites")
    assert ds.target is Target.VALUE and ds.sample_shape == (len(SOLAR_CHANNELS), 24)
    assert ds.x.dtype == np.float32 and ds.y.dtype == np.float32
    assert np.isfinite(ds.x).all() and np.isfinite(ds.y).all()
    assert ds.y.min() >= 0 and ds.y.max() < 1.4  # kW/m^2, below the solar constant
    assert len(ds) > 12_000 and sorted(np.unique(ds.groups).tolist()) == [0, 1, 2]
    with pytest.raises(DataError, match=r"set task\.kind to regression"):
        load_data(_spec(dataset="solar_sites"), kind="classification")
    spec = _spec(
        dataset="solar_sites", split="segment", segment_blocks=24, segment_gap=24,
        partition={"kind": "natural"},
    )  # fmt: skip
    a = derive_run_data(spec, 5, 6, edge=True, kind="regression")
    b = derive_run_data(spec, 5, 6, edge=True, kind="regression")
    c = derive_run_data(spec, 6, 6, edge=True, kind="regression")
    assert len(a.splits.test) >= 1000
    assert all(np.array_equal(p, q) for p, q in zip(a.parts, b.parts, strict=True))
    assert np.array_equal(a.splits.test, b.splits.test)
    assert not np.array_equal(a.splits.test, c.splits.test)
    # natural partition: each node holds one site's hours only, sites dealt in turn
    sites = [np.unique(a.dataset.groups[p]).tolist() for p in a.parts]
    assert sites == [[0], [1], [2], [0], [1], [2]]
    # standardised with statistics of the server-held sets, the targets untouched
    assert a.preprocessing is not None and a.preprocessing["kind"] == "per_channel"
    assert np.array_equal(a.dataset.y, ds.y)


def test_data_stage_records_the_trivial_baseline() -> None:
    from edgeintel.pipeline.stages.basic_stages import trivial_baseline
    from edgeintel.tasks import make_task

    ds = SimpleNamespace(y=np.array([1.0, 2.0, 3.0, 10.0, 10.0]))
    out = trivial_baseline(make_task("regression"), ds, np.array([0, 1, 2]), np.array([3, 4]))
    # mean of training targets = 2 -> RMSE 8; last value starts at 3 then 10 -> RMSE sqrt(24.5)
    assert out["metric"] == "rmse" and out["best"] == "last value"
    assert out["value"] == pytest.approx(np.sqrt(24.5))
    assert out["all"]["mean"]["rmse"] == pytest.approx(8.0)


def test_shuttle_valves_loads_and_trains_on_normal_records_only() -> None:
    ds = load_dataset("shuttle_valves")
    assert ds.target is Target.ANOMALY and ds.sample_shape == (1, 9) and len(ds) == 49_097
    assert ds.x.dtype == np.float32 and np.isfinite(ds.x).all()
    assert int(ds.y.sum()) == 3511 and ds.classes == ["normal", "anomaly"]
    spec = _spec(dataset="shuttle_valves", server_fraction=0.05, partition={"kind": "iid"})
    a = derive_run_data(spec, 13, 12, edge=True, kind="anomaly")
    b = derive_run_data(spec, 13, 12, edge=True, kind="anomaly")
    assert all(np.array_equal(p, q) for p, q in zip(a.parts, b.parts, strict=True))
    y, sp = a.dataset.y, a.splits
    assert (y[sp.train] == 0).all() and all((y[p] == 0).all() for p in a.parts)
    assert len(sp.test) >= 1000 and 700 < int(y[sp.test].sum()) < 1100  # stratified 25%
    assert a.preprocessing is not None and a.preprocessing["kind"] == "per_feature"
