"""Held-out splits that really hold out, and preprocessing fitted on training data only.

Pure functions of labels, group ids and a seed that return sorted index arrays:

* ``stratified``: independent samples (a digit image, one appliance recording),
  split per class at random (``partition.train_test_split``);
* ``group``: whole groups (subjects, recordings) go to one side, so nothing of a
  test subject is seen in training;
* ``segment``: sequences (video frames, sensor streams) are cut into contiguous
  blocks per recording; whole blocks are held out and ``gap`` samples on the
  training side of every block boundary are dropped, so no training frame is a
  temporal neighbour of a test frame.

``holdout_split`` picks the kind (``auto``: segment for sequential data, group
when the data has group ids, else stratified) and is used for the test split,
the validation carve-out (selection) and the server-held set alike.
``Standardizer`` holds per-channel or per-feature statistics fitted on training data.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from edgeintel.errors import ConfigError, DataError

__all__ = [
    "SPLIT_KINDS",
    "STANDARDIZE_KINDS",
    "RunSplits",
    "Standardizer",
    "fit_standardizer",
    "group_split",
    "holdout_split",
    "resolve_split_kind",
    "run_splits",
    "segment_split",
]

SPLIT_KINDS = ("auto", "stratified", "group", "segment")


def _check_fraction(fraction: float, what: str) -> None:
    if not 0 < fraction < 1:
        raise ConfigError(f"{what} must lie in (0, 1), got {fraction}")


def group_split(
    y: np.ndarray, groups: np.ndarray, fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Whole groups to the held-out side until it holds about ``fraction`` of the samples.

    Groups are taken in a seeded random order; a group is skipped when taking it
    would leave a class without training samples. Raises ``DataError`` when no
    group can be held out (e.g. one group per class).
    """
    _check_fraction(fraction, "split fraction")
    y, groups = np.asarray(y), np.asarray(groups)
    ids, inverse = np.unique(groups, return_inverse=True)
    if len(ids) < 2:
        raise DataError(f"a group split needs at least 2 groups, the data has {len(ids)}")
    rng = np.random.default_rng(seed)
    left = np.bincount(y, minlength=int(y.max()) + 1)
    target = fraction * len(y)
    held: list[int] = []
    taken = 0
    for g in rng.permutation(len(ids)):
        if taken >= target:
            break
        members = inverse == g
        counts = np.bincount(y[members], minlength=len(left))
        if np.any((left - counts == 0) & (left > 0)):
            continue
        held.append(int(g))
        left -= counts
        taken += int(members.sum())
    if not held:
        raise DataError(
            "a group split cannot hold out any group without removing a class from training "
            "(each group holds a whole class); use split 'segment' for sequences"
        )
    test = np.isin(inverse, held)
    return np.flatnonzero(~test), np.flatnonzero(test)


def segment_split(
    y: np.ndarray,
    groups: np.ndarray | None,
    fraction: float,
    seed: int = 0,
    blocks: int = 8,
    gap: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous blocks of each recording held out, with ``gap`` samples purged beside them.

    Samples of a recording (``groups`` id; ``None`` = one recording) are taken in
    index order, which must be time order. Each recording is cut into ``blocks``
    equal contiguous blocks; ``round(fraction * blocks)`` of them (at least one)
    are held out, chosen at random. Up to ``gap`` training samples next to each
    held-out block are dropped from both sides (returned in neither array).
    """
    _check_fraction(fraction, "split fraction")
    if blocks < 2:
        raise ConfigError(f"segment split: blocks must be >= 2, got {blocks}")
    if gap < 0:
        raise ConfigError(f"segment split: gap must be >= 0, got {gap}")
    y = np.asarray(y)
    groups = np.zeros(len(y), dtype=np.int64) if groups is None else np.asarray(groups)
    rng = np.random.default_rng(seed)
    train: list[np.ndarray] = []
    test: list[np.ndarray] = []
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        n_blocks = min(blocks, len(members))
        if n_blocks < 2:
            train.append(members)
            continue
        k = min(max(round(fraction * n_blocks), 1), n_blocks - 1)
        chunks = np.array_split(np.arange(len(members)), n_blocks)
        held = set(rng.choice(n_blocks, size=k, replace=False).tolist())
        is_test = np.zeros(len(members), dtype=bool)
        for b in held:
            is_test[chunks[b]] = True
        keep = ~is_test
        # purge training samples within `gap` positions of any held-out sample
        if gap > 0:
            pos = np.flatnonzero(is_test)
            for off in range(1, gap + 1):
                for p in (pos - off, pos + off):
                    p = p[(p >= 0) & (p < len(members))]
                    keep[p] &= False
        train.append(members[keep])
        test.append(members[is_test])
    tr = np.sort(np.concatenate(train)) if train else np.empty(0, dtype=np.int64)
    te = np.sort(np.concatenate(test)) if test else np.empty(0, dtype=np.int64)
    missing = sorted(set(np.unique(y).tolist()) - set(np.unique(y[tr]).tolist()))
    if missing:
        raise DataError(f"segment split left class {missing[0]} without training samples")
    return tr, te


def resolve_split_kind(kind: str, sequential: bool, has_groups: bool) -> str:
    """``auto``: ``segment`` for sequential data, ``group`` with group ids, else stratified."""
    if kind not in SPLIT_KINDS:
        raise ConfigError(f"data.split: unknown kind {kind!r}; expected one of {SPLIT_KINDS}")
    if kind != "auto":
        if kind == "group" and not has_groups:
            raise DataError("data.split 'group' needs group ids (subject/recording); data has none")
        return kind
    if sequential:
        return "segment"
    return "group" if has_groups else "stratified"


def holdout_split(
    y: np.ndarray,
    fraction: float,
    seed: int = 0,
    *,
    kind: str = "stratified",
    groups: np.ndarray | None = None,
    blocks: int = 8,
    gap: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Split positions ``0..len(y)-1`` into (kept, held out) with a resolved ``kind``."""
    from edgeintel.data.partition import train_test_split

    if kind == "stratified":
        return train_test_split(y, fraction, seed=seed)
    if kind == "group":
        if groups is None:
            raise DataError("a group split needs group ids")
        return group_split(y, groups, fraction, seed)
    if kind == "segment":
        return segment_split(y, groups, fraction, seed, blocks=blocks, gap=gap)
    raise ConfigError(f"unknown split kind {kind!r}; expected stratified, group or segment")


STANDARDIZE_KINDS = ("per_channel", "per_feature")


@dataclass(frozen=True)
class Standardizer:
    """Mean and standard deviation fitted on training data, applied to every sample.

    ``per_channel``: one pair per channel (axis 1 of ``(N, C, ...)``; sensor
    channels, whose scale is the same along time); ``per_feature``: one pair per
    value of a sample (``mean.shape == x.shape[1:]``; the columns of a table).
    """

    mean: np.ndarray
    std: np.ndarray
    kind: str = "per_channel"

    def __post_init__(self) -> None:
        if self.kind not in STANDARDIZE_KINDS:
            raise ConfigError(
                f"standardizer kind {self.kind!r}: expected one of {STANDARDIZE_KINDS}"
            )

    def apply(self, x: np.ndarray) -> np.ndarray:
        if self.kind == "per_feature":
            return ((x - self.mean) / self.std).astype(np.float32)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return ((x - self.mean.reshape(shape)) / self.std.reshape(shape)).astype(np.float32)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Standardizer:
        return cls(
            np.asarray(raw["mean"], dtype=np.float64),
            np.asarray(raw["std"], np.float64),
            str(raw.get("kind", "per_channel")),
        )


def fit_standardizer(x: np.ndarray, kind: str = "per_channel") -> Standardizer:
    """Statistics of ``x`` (the fitting party's rows only), per channel over samples and
    time/space, or per feature over samples; a constant feature gets std 1e-8 added."""
    if x.ndim < 3 or len(x) == 0:
        raise DataError("fit_standardizer: expected non-empty samples shaped (N, C, ...)")
    axes = (0,) if kind == "per_feature" else (0, *range(2, x.ndim))
    mean = x.mean(axis=axes, dtype=np.float64)
    std = x.std(axis=axes, dtype=np.float64) + 1e-8
    return Standardizer(mean, std, kind)


@dataclass(frozen=True)
class RunSplits:
    """Disjoint index sets of one run (into the loaded dataset).

    ``train``: shared out to the devices (edge training) or used centrally (baseline);
    ``val``: selection (recipe, artifact per device, thresholds), never trained on;
    ``server``: held by the server only, for calibration/fine-tuning after edge
    training (may be empty); ``test``: reported accuracy only.
    """

    train: np.ndarray
    val: np.ndarray
    server: np.ndarray
    test: np.ndarray
    kind: str
    dropped: int = 0
    anomalies_excluded: int = 0

    def normal_training(self, flags: np.ndarray) -> RunSplits:
        """These splits with the training set's anomalies (``flags[i] != 0``) excluded
        (counted in ``anomalies_excluded``); held-out sets keep both kinds of sample."""
        anomalous = np.asarray(flags)[self.train] != 0
        if anomalous.all():
            raise DataError("the training split holds no normal sample to learn from")
        return replace(
            self,
            train=self.train[~anomalous],
            anomalies_excluded=self.anomalies_excluded + int(anomalous.sum()),
        )

    def to_json(self) -> dict[str, Any]:
        out = {
            "kind": self.kind,
            "train": len(self.train),
            "validation": len(self.val),
            "server": len(self.server),
            "test": len(self.test),
            "purged": self.dropped,
        }
        if self.anomalies_excluded:
            out["anomalies_excluded_from_training"] = self.anomalies_excluded
        return out


def run_splits(
    y: np.ndarray,
    groups: np.ndarray | None,
    *,
    test_fraction: float,
    validation_fraction: float,
    server_fraction: float = 0.0,
    kind: str = "auto",
    sequential: bool = False,
    blocks: int = 8,
    gap: int = 3,
    seed: int = 0,
) -> RunSplits:
    """Test, then server-held, then validation sets, each cut with the same resolved ``kind``.

    Each later cut works inside what the earlier ones left, so the four sets are
    disjoint; with ``segment`` every cut holds out contiguous blocks with a purge gap.
    """
    y = np.asarray(y)
    kind = resolve_split_kind(kind, sequential, groups is not None)

    def cut(idx: np.ndarray, fraction: float, salt: int) -> tuple[np.ndarray, np.ndarray]:
        g = None if groups is None else groups[idx]
        keep, held = holdout_split(
            y[idx], fraction, seed + salt, kind=kind, groups=g, blocks=blocks, gap=gap
        )
        return idx[keep], idx[held]

    everything = np.arange(len(y))
    rest, test = cut(everything, test_fraction, 0)
    server = np.empty(0, dtype=np.int64)
    if server_fraction > 0:
        rest, server = cut(rest, server_fraction, 1)
    train, val = cut(rest, validation_fraction, 2)
    dropped = len(y) - len(train) - len(val) - len(server) - len(test)
    return RunSplits(train, val, server, test, kind, dropped)
