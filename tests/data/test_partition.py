"""Partitioners: sizes add up, nothing lost or duplicated, skew follows alpha, seeds reproduce."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgeintel.data import PARTITIONERS, label_skew, partition, train_test_split
from edgeintel.errors import ConfigError, DataError


@pytest.fixture
def labels() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 10, size=2000)


@pytest.mark.parametrize("kind", PARTITIONERS.names())
def test_every_sample_exactly_once(kind: str, labels: np.ndarray) -> None:
    groups = np.arange(len(labels)) % 37
    parts = partition(labels, 25, kind=kind, seed=3, groups=groups, alpha=0.5)
    assert len(parts) == 25
    allidx = np.concatenate(parts)
    assert len(allidx) == len(labels)  # sizes add up
    assert np.array_equal(np.sort(allidx), np.arange(len(labels)))  # none lost or duplicated
    assert all(len(p) >= 1 for p in parts)


@pytest.mark.parametrize("kind", PARTITIONERS.names())
def test_same_seed_same_split(kind: str, labels: np.ndarray) -> None:
    groups = np.arange(len(labels)) % 37
    a = partition(labels, 10, kind=kind, seed=5, groups=groups)
    b = partition(labels, 10, kind=kind, seed=5, groups=groups)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_iid_sizes_differ_by_at_most_one(labels: np.ndarray) -> None:
    sizes = [len(p) for p in partition(labels, 7, "iid", seed=0)]
    assert max(sizes) - min(sizes) <= 1
    assert label_skew(partition(labels, 7, "iid", seed=0), labels) < 0.1


def test_dirichlet_skew_grows_as_alpha_shrinks(labels: np.ndarray) -> None:
    skews = []
    for alpha in (100.0, 1.0, 0.1):
        vals = [
            label_skew(partition(labels, 20, "dirichlet", seed=s, alpha=alpha), labels)
            for s in range(3)
        ]
        skews.append(float(np.mean(vals)))
    assert skews[0] < skews[1] < skews[2], skews
    assert skews[0] < 0.15 and skews[2] > 0.5


def test_dirichlet_min_samples_respected(labels: np.ndarray) -> None:
    parts = partition(labels, 20, "dirichlet", seed=1, alpha=0.3, min_samples=20)
    assert min(len(p) for p in parts) >= 20


def test_quantity_skew_keeps_labels_iid(labels: np.ndarray) -> None:
    parts = partition(labels, 10, "quantity", seed=2, alpha=0.3, min_samples=5)
    sizes = np.array([len(p) for p in parts])
    assert sizes.min() >= 5
    assert sizes.max() > 3 * sizes.min()  # sizes really are skewed
    big = [p for p in parts if len(p) > 150]
    assert big and label_skew(big, labels) < 0.12


def test_natural_keeps_groups_whole_when_enough_groups() -> None:
    y = np.zeros(100, dtype=int)
    y[50:] = 1
    groups = np.repeat(np.arange(10), 10)
    parts = partition(y, 4, "natural", groups=groups)
    for p in parts:
        for g in np.unique(groups[p]):
            assert np.isin(np.flatnonzero(groups == g), p).all()  # group not split


def test_natural_shares_a_group_when_few_groups() -> None:
    y = np.arange(90) % 3
    groups = np.repeat(np.arange(3), 30)
    parts = partition(y, 6, "natural", groups=groups)
    assert all(len(np.unique(groups[p])) == 1 for p in parts)  # a device sees one recording
    assert [len(p) for p in parts] == [15] * 6


def test_natural_needs_groups(labels: np.ndarray) -> None:
    with pytest.raises(DataError, match="needs subject or recording ids"):
        partition(labels, 3, "natural")


def test_bad_inputs(labels: np.ndarray) -> None:
    with pytest.raises(ConfigError, match="alpha must be > 0"):
        partition(labels, 3, "dirichlet", alpha=0)
    with pytest.raises(DataError, match="cannot give each of 5000 devices"):
        partition(labels, 5000, "iid")
    with pytest.raises(ConfigError, match="unknown partition kind 'zipf'"):
        partition(labels, 3, "zipf")


def test_label_skew_hand_computed() -> None:
    y = np.array([0, 0, 1, 1])
    assert label_skew([np.array([0, 2]), np.array([1, 3])], y) == 0.0
    assert label_skew([np.array([0, 1]), np.array([2, 3])], y) == pytest.approx(0.5)


def test_train_test_split_is_stratified_and_disjoint(labels: np.ndarray) -> None:
    tr, te = train_test_split(labels, 0.25, seed=0)
    assert len(np.intersect1d(tr, te)) == 0 and len(tr) + len(te) == len(labels)
    for c in range(10):
        frac = np.mean(labels[te] == c) / np.mean(labels == c)
        assert 0.9 < frac < 1.1


def test_quantity_skew_follows_alpha() -> None:
    """Device shares ~ Dir(alpha 1_n): each share has mean 1/n and variance
    (1/n)(1 - 1/n)/(n alpha + 1), so the coefficient of variation of the sizes above the
    floor is sqrt((n - 1) / (n alpha + 1)): n = 10 gives 0.9045 at alpha = 1 and 0.2985
    at alpha = 10 (hand-computed)."""
    y = np.zeros(20_000, dtype=int)
    for alpha, expect in ((1.0, 0.9045), (10.0, 0.2985)):
        cvs = []
        for seed in range(40):
            sizes = np.array([len(p) for p in partition(y, 10, "quantity", seed, alpha=alpha)])
            extra = sizes - 1
            cvs.append(extra.std() / extra.mean())
        # the sample CV (ddof 0) of 10 draws is biased low by ~ sqrt(9/10); allow for it
        assert float(np.mean(cvs)) == pytest.approx(expect * math.sqrt(0.9), rel=0.15), alpha


def test_natural_balances_whole_groups_largest_first() -> None:
    """Groups of 5, 20, 50, 10, 30, 5, 20, 10 samples (ids 0..7) over 4 devices, largest
    group first to the currently smallest device (ties: lowest device), by hand:
    50 -> d0; 30 -> d1; 20 (id 1) -> d2; 20 (id 6) -> d3; 10 (id 3) -> d2 (30);
    10 (id 7) -> d3 (30); 5 (id 0) -> d1 (35); 5 (id 5) -> d2 (35).
    Device sizes 50, 35, 35, 30."""
    sizes = [5, 20, 50, 10, 30, 5, 20, 10]
    groups = np.repeat(np.arange(8), sizes)
    y = np.zeros(len(groups), dtype=int)
    parts = partition(y, 4, "natural", groups=groups)
    assert [len(p) for p in parts] == [50, 35, 35, 30]
    held = [sorted(int(g) for g in np.unique(groups[p])) for p in parts]
    assert held == [[2], [0, 4], [1, 3, 5], [6, 7]]
