"""Held-out splits: segment / group / stratified, run splits, standardisation, provenance."""

from __future__ import annotations

import numpy as np
import pytest

from edgeintel.data import (
    fit_standardizer,
    group_split,
    load_dataset,
    run_splits,
    segment_split,
    train_test_split,
)
from edgeintel.data.provenance import chance_accuracy, compare_to_central, index_digest
from edgeintel.errors import DataError


def test_segment_split_by_hand() -> None:
    # one recording of 16 samples, 4 blocks of 4; one held out; gap 1 purges its neighbours
    y = np.array([0, 1] * 8)
    tr, te = segment_split(y, None, 0.25, seed=0, blocks=4, gap=1)
    assert len(te) == 4 and np.all(np.diff(te) == 1)  # one contiguous block
    lo, hi = te[0], te[-1]
    expected_train = [i for i in range(16) if i < lo - 1 or i > hi + 1]
    assert tr.tolist() == expected_train


def test_segment_split_keeps_recordings_apart() -> None:
    groups = np.repeat([0, 1, 2], 40)
    y = groups.copy()
    tr, te = segment_split(y, groups, 0.25, seed=3, blocks=8, gap=2)
    assert not set(tr) & set(te)
    for g in range(3):  # every recording contributes test blocks and training samples
        assert np.any(groups[te] == g) and np.any(groups[tr] == g)
    # no training sample within 2 positions of a test sample of the same recording
    d = np.abs(tr[:, None] - te[None, :])
    same = groups[tr][:, None] == groups[te][None, :]
    assert d[same].min() > 2


def test_group_split_never_splits_a_group() -> None:
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(10), 12)
    y = rng.integers(0, 3, size=len(groups))
    tr, te = group_split(y, groups, 0.3, seed=1)
    assert not set(groups[tr]) & set(groups[te])
    assert 0.15 < len(te) / len(y) < 0.5
    with pytest.raises(DataError, match="each group holds a whole class"):
        group_split(np.repeat([0, 1], 5), np.repeat([0, 1], 5), 0.3)


def test_run_splits_are_disjoint_and_cover_the_data() -> None:
    y = np.repeat(np.arange(4), 50)
    sp = run_splits(y, None, test_fraction=0.25, validation_fraction=0.2, server_fraction=0.1)
    sets = [set(sp.train), set(sp.val), set(sp.server), set(sp.test)]
    assert sum(len(s) for s in sets) == len(y) and sp.dropped == 0
    assert len(set().union(*sets)) == len(y)
    assert len(sp.test) == 48 and len(sp.server) == 16 and len(sp.val) == 28


def _nearest_train_gap(x: np.ndarray, groups: np.ndarray, tr: np.ndarray, te: np.ndarray):
    """1-NN on raw pixels: accuracy proxy and the frame distance to the nearest training frame."""
    flat = x.reshape(len(x), -1).astype(np.float64)
    d = (flat[te] ** 2).sum(1)[:, None] - 2 * flat[te] @ flat[tr].T + (flat[tr] ** 2).sum(1)
    nn = tr[d.argmin(1)]
    same_clip = groups[nn] == groups[te]
    return nn, np.where(same_clip, np.abs(nn - te), 10**9)


def test_video_frames_never_straddle_train_and_test() -> None:
    """On a leaky (random per-frame) split the nearest raw-pixel training frame of most test
    frames is the adjacent frame; the run's split must put every test frame > gap frames away."""
    ds = load_dataset("video_scenes", image_size=16)
    assert ds.groups is not None and ds.extra["sequential"]
    tr_leak, te_leak = train_test_split(ds.y, 0.25, seed=5)
    nn, gap_leak = _nearest_train_gap(ds.x, ds.groups, tr_leak, te_leak)
    assert np.mean(gap_leak <= 2) > 0.9  # the detector sees the leak
    assert np.mean(ds.y[nn] == ds.y[te_leak]) == 1.0
    sp = run_splits(
        ds.y, ds.groups, test_fraction=0.25, validation_fraction=0.15, sequential=True, seed=5
    )
    assert sp.kind == "segment"
    for held in (sp.test, sp.val):
        _, gap = _nearest_train_gap(ds.x, ds.groups, sp.train, held)
        assert gap.min() > 3, "a held-out frame has a temporal neighbour in training"


def test_standardizer_by_hand() -> None:
    x = np.array([[[1.0, 3.0], [0.0, 0.0]], [[5.0, 7.0], [2.0, 2.0]]])  # (N=2, C=2, L=2)
    s = fit_standardizer(x)
    assert s.mean.tolist() == [4.0, 1.0]
    assert s.std == pytest.approx([np.sqrt(5.0), 1.0])
    out = s.apply(x)
    assert out[0, 0].tolist() == pytest.approx([-3 / np.sqrt(5), -1 / np.sqrt(5)])
    assert type(s).from_json(s.to_json()).mean.tolist() == s.mean.tolist()


def test_chance_and_gap_to_central() -> None:
    assert chance_accuracy(np.array([0, 0, 0, 1])) == 0.75
    cmp = compare_to_central(0.80, 0.95, 0.5)
    assert cmp["gap_to_central"] == pytest.approx(0.15) and cmp["above_chance"] == 0.3
    assert cmp["warnings"] == []
    near = compare_to_central(0.55, 0.95, 0.5)
    assert len(near["warnings"]) == 2 and "chance" in near["warnings"][0]
    assert index_digest(np.array([3, 1, 2])) == index_digest(np.array([1, 2, 3]))
