"""The smartwatch physiotherapy dataset (seglearn) and the 1-nearest-neighbour baseline."""

from __future__ import annotations

import numpy as np
import pytest

from edgeintel.data import load_dataset
from edgeintel.data.baselines import nearest_neighbour_predict
from edgeintel.data.wearables import watch_windows
from edgeintel.examples import example_path
from edgeintel.scenario import load_scenario


def test_watch_windows_average_then_slide() -> None:
    rec = np.arange(20, dtype=np.float64)[:, None].repeat(2, axis=1)  # (T=20, C=2) at 50 Hz
    rec[:, 1] *= -1
    w = watch_windows(rec, decimate=2, window=4, stride=3)
    # 10 averaged samples 0.5, 2.5, ..., 18.5; windows start at 0, 3, 6
    assert w.shape == (3, 2, 4) and w.dtype == np.float32
    np.testing.assert_allclose(w[1, 0], [6.5, 8.5, 10.5, 12.5])
    np.testing.assert_allclose(w[2, 1], [-12.5, -14.5, -16.5, -18.5])
    assert watch_windows(rec[:7], decimate=2, window=4, stride=1).shape == (0, 2, 4)


def test_watch_exercises_loads_ten_subjects_held_out_whole() -> None:
    pytest.importorskip("seglearn", reason="watch_exercises ships in seglearn")
    ds = load_dataset("watch_exercises")
    assert ds.sample_shape == (6, 50) and ds.sampling_rate_hz == 25.0
    assert ds.num_classes == 7 and set(np.unique(ds.y)) == set(range(7))
    assert ds.groups is not None and len(np.unique(ds.groups)) == 10
    assert len(ds) > 9000
    sc = load_scenario(example_path("wearable_health"))
    assert sc.data.dataset == "watch_exercises"
    sp = sc.data.splits(ds, sc.seed)
    assert sp.kind == "group" and len(sp.test) >= 1000
    held = set(np.unique(ds.groups[sp.test]).tolist())
    trained = set(np.unique(ds.groups[sp.train]).tolist())
    assert len(held) >= 3 and not held & trained  # no test subject seen in training


def test_nearest_neighbour_by_hand() -> None:
    x_tr = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    y_tr = np.array([0, 1, 2])
    x_te = np.array([[1.0, 1.0], [9.0, 2.0], [2.0, 7.0], [6.0, 6.0]])
    pred, n = nearest_neighbour_predict(x_tr, y_tr, x_te, chunk=2)
    # (6, 6) is equally far from (10, 0) and (0, 10): the lower training index wins
    assert pred.tolist() == [0, 1, 2, 1] and n == 3


def test_nearest_neighbour_subsamples_a_large_reference() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 1, 3))
    y = rng.integers(0, 2, 50)
    pred, n = nearest_neighbour_predict(x, y, x[:5], max_reference=20, seed=1)
    assert n == 20 and pred.shape == (5,)
    full, _ = nearest_neighbour_predict(x, y, x[:5])
    assert full.tolist() == y[:5].tolist()  # each sample is its own nearest neighbour


def test_data_stage_baselines_include_nearest_neighbour() -> None:
    from edgeintel.data import Dataset, Modality
    from edgeintel.pipeline.stages.basic_stages import NEAREST, trivial_baseline
    from edgeintel.tasks import make_task

    # class 0 near the origin, class 1 far away; 1 is the majority of the training labels
    x = np.array([[0.0], [0.1], [5.0], [5.1], [5.2], [0.05], [5.05]])[:, None, :]
    ds = Dataset("t", x, np.array([0, 0, 1, 1, 1, 0, 1]), ["a", "b"], Modality.TABULAR)
    out = trivial_baseline(make_task("classification"), ds, np.arange(5), np.array([5, 6]))
    assert out["all"]["majority class"]["accuracy"] == 0.5
    assert out["all"][NEAREST] == {"accuracy": 1.0, "reference_samples": 5}
    assert out["best"] == NEAREST and out["value"] == 1.0
