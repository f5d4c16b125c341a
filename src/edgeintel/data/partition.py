"""Split a dataset across devices: IID, Dirichlet label skew, quantity skew, natural.

Each partitioner is a pure function of the labels (and group ids) and a seed,
returning one sorted index array per device. Every sample goes to exactly one
device; no sample is lost or duplicated.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgeintel.errors import ConfigError, DataError
from edgeintel.registry import Registry

__all__ = [
    "PARTITIONERS",
    "dirichlet_partition",
    "iid_partition",
    "label_skew",
    "natural_partition",
    "partition",
    "quantity_partition",
    "train_test_split",
]

Partitioner = Callable[..., list[np.ndarray]]
PARTITIONERS: Registry[Partitioner] = Registry("partition kind")

_MAX_TRIES = 200


def _check(n_samples: int, n_devices: int, min_samples: int) -> None:
    if n_devices < 1:
        raise ConfigError(f"number of devices must be >= 1, got {n_devices}")
    if n_devices * min_samples > n_samples:
        raise DataError(
            f"cannot give each of {n_devices} devices {min_samples} sample(s): the training set "
            f"has only {n_samples}; use fewer devices or a larger dataset"
        )


@PARTITIONERS.register("iid")
def iid_partition(
    y: np.ndarray, n_devices: int, rng: np.random.Generator, **_: object
) -> list[np.ndarray]:
    """Shuffle and deal out equal shares (sizes differ by at most one)."""
    _check(len(y), n_devices, 1)
    perm = rng.permutation(len(y))
    return [np.sort(p) for p in np.array_split(perm, n_devices)]


@PARTITIONERS.register("dirichlet")
def dirichlet_partition(
    y: np.ndarray,
    n_devices: int,
    rng: np.random.Generator,
    alpha: float = 0.5,
    min_samples: int = 1,
    **_: object,
) -> list[np.ndarray]:
    """Label skew (Hsu et al. 2019): per class, shares across devices ~ Dir(alpha).

    Smaller ``alpha`` gives more skew. Resamples until every device holds at
    least ``min_samples`` samples, and raises if that cannot be reached.
    """
    if alpha <= 0:
        raise ConfigError(f"partition.alpha must be > 0, got {alpha}")
    _check(len(y), n_devices, min_samples)
    classes = np.unique(y)
    for _try in range(_MAX_TRIES):
        parts: list[list[np.ndarray]] = [[] for _ in range(n_devices)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(y == c))
            shares = rng.dirichlet(np.full(n_devices, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(idx)).astype(int)
            for d, chunk in enumerate(np.split(idx, cuts)):
                parts[d].append(chunk)
        out = [np.sort(np.concatenate(p)) for p in parts]
        if min(len(p) for p in out) >= min_samples:
            return out
    raise DataError(
        f"dirichlet partition (alpha={alpha}) could not give all {n_devices} devices "
        f">= {min_samples} samples in {_MAX_TRIES} tries; raise alpha or lower min_samples"
    )


@PARTITIONERS.register("quantity")
def quantity_partition(
    y: np.ndarray,
    n_devices: int,
    rng: np.random.Generator,
    alpha: float = 0.5,
    min_samples: int = 1,
    **_: object,
) -> list[np.ndarray]:
    """Quantity skew: IID labels, device sizes ~ Dir(alpha), each >= ``min_samples``."""
    if alpha <= 0:
        raise ConfigError(f"partition.alpha must be > 0, got {alpha}")
    n = len(y)
    _check(n, n_devices, max(min_samples, 1))
    floor = max(min_samples, 1)
    spare = n - floor * n_devices
    shares = rng.dirichlet(np.full(n_devices, alpha))
    extra = np.floor(shares * spare).astype(int)
    # hand out the rounding remainder to the largest fractional parts (deterministic)
    remainder = spare - int(extra.sum())
    frac_order = np.argsort(-(shares * spare - extra), kind="stable")
    extra[frac_order[:remainder]] += 1
    sizes = extra + floor
    perm = rng.permutation(n)
    return [np.sort(p) for p in np.split(perm, np.cumsum(sizes)[:-1])]


@PARTITIONERS.register("natural")
def natural_partition(
    y: np.ndarray,
    n_devices: int,
    rng: np.random.Generator,
    groups: np.ndarray | None = None,
    **_: object,
) -> list[np.ndarray]:
    """By subject / recording: a device only sees samples of its own group(s).

    With at least as many groups as devices, whole groups are dealt out
    (largest first, to the currently smallest device). With fewer groups,
    devices share a group and each gets a contiguous stretch of it, as two
    cameras watching the same scene would.
    """
    if groups is None:
        raise DataError(
            "partition kind 'natural' needs subject or recording ids; this dataset has none "
            "(use iid, dirichlet or quantity, or give data.group_column)"
        )
    _check(len(y), n_devices, 1)
    ids, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(ids))]
    if len(ids) >= n_devices:
        order = sorted(range(len(ids)), key=lambda g: (-len(members[g]), g))
        bins: list[list[np.ndarray]] = [[] for _ in range(n_devices)]
        sizes = np.zeros(n_devices, dtype=int)
        for g in order:
            d = int(np.argmin(sizes))
            bins[d].append(members[g])
            sizes[d] += len(members[g])
        return [np.sort(np.concatenate(b)) for b in bins]
    owners: list[list[int]] = [[] for _ in ids]
    for d in range(n_devices):
        owners[d % len(ids)].append(d)
    out: list[np.ndarray] = [np.empty(0, dtype=int)] * n_devices
    for g, devs in enumerate(owners):
        if len(members[g]) < len(devs):
            raise DataError(
                f"group {ids[g]!r} has {len(members[g])} samples for {len(devs)} devices"
            )
        for d, chunk in zip(devs, np.array_split(members[g], len(devs)), strict=True):
            out[d] = np.sort(chunk)
    del rng  # natural splits are fully determined by the data
    return out


def partition(
    y: np.ndarray,
    n_devices: int,
    kind: str = "iid",
    seed: int | np.random.Generator = 0,
    groups: np.ndarray | None = None,
    alpha: float = 0.5,
    min_samples: int = 1,
) -> list[np.ndarray]:
    """Split sample indices ``0..len(y)-1`` across ``n_devices`` with the named partitioner."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    fn = PARTITIONERS.get(str(kind))
    return fn(np.asarray(y), n_devices, rng, groups=groups, alpha=alpha, min_samples=min_samples)


def label_skew(parts: list[np.ndarray], y: np.ndarray) -> float:
    """Mean total-variation distance between each device's label mix and the global mix.

    0 means every device sees the global class proportions; 1 is maximal skew.
    Devices are weighted by their sample counts.
    """
    n_classes = int(y.max()) + 1
    global_p = np.bincount(y, minlength=n_classes) / len(y)
    total, weight = 0.0, 0
    for p in parts:
        if len(p) == 0:
            continue
        local = np.bincount(y[p], minlength=n_classes) / len(p)
        total += 0.5 * np.abs(local - global_p).sum() * len(p)
        weight += len(p)
    return total / weight if weight else 0.0


def train_test_split(
    y: np.ndarray, test_fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split of indices into (train, test); every class keeps >= 1 training sample."""
    if not 0 < test_fraction < 1:
        raise ConfigError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = round(len(idx) * test_fraction)
        k = min(max(k, 1 if len(idx) > 1 else 0), len(idx) - 1)
        test.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))
