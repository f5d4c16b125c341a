"""One derivation of a run's data: the held-out sets, each device's shard, the preprocessing.

Every consumer calls ``derive_run_data``: the data stage of ``edgeintel run``,
``edgeintel compress`` (a scenario or ``--from-run``), and the device agents (the
runtime stage and ``edgeintel device``), so a device streams exactly the samples its
model was trained and tested on, preprocessed exactly as in training.

Roles (``provenance``): ``test`` (reported accuracy only), ``server`` (held by the
server), ``val`` (selection), ``train`` (shared out to the devices by the scenario's
partitioner; each device's shard is a subset of it). Preprocessing: tabular and
time-series data are standardised (``data.standardize``, on by default; per feature
for a table's columns, per channel for sensor channels) with statistics of the data
the fitting party holds: the central training split when the model is trained
centrally, else the server-held sets (validation + server) only, never a device's
shard and never the test set ("edge means the data stays there").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeintel.data.datasets import Dataset, Modality, Target, load_data
from edgeintel.data.partition import partition
from edgeintel.data.split import RunSplits, Standardizer, fit_standardizer
from edgeintel.data.streams import dwell_stream
from edgeintel.errors import ConfigError

__all__ = [
    "SCALE_SPREAD",
    "RunData",
    "check_preprocessing",
    "derive_run_data",
    "input_interval_s",
    "scale_spread",
    "shuffled_stream",
    "standardization_kind",
    "stream_inputs",
]

SCALE_SPREAD = 100.0
"""Features whose standard deviations differ by more than this factor are flagged."""

FIT_CENTRAL = "train split"
FIT_EDGE = "server-held (validation + server)"


@dataclass(frozen=True)
class RunData:
    """A run's data as every consumer sees it.

    ``dataset.x`` is preprocessed (standardised where ``standardizer`` is set);
    ``parts[i]`` indexes device ``i``'s shard into ``dataset`` (a subset of
    ``splits.train``; empty tuple when no device count was given); ``preprocessing``
    is the record written into the model's metadata; ``scale`` describes the spread
    of the raw features' scales on the fitting rows; ``warnings`` are for the report.
    """

    dataset: Dataset
    splits: RunSplits
    parts: tuple[np.ndarray, ...]
    standardizer: Standardizer | None
    preprocessing: dict[str, Any] | None
    scale: dict[str, Any] | None
    warnings: tuple[str, ...] = ()
    stream: tuple[int, float, int, bool] = (1, 0.0, 0, False)  # frames, noise, seed, shuffle

    def device_arrays(self, device: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs (float32) and labels of device ``device``'s shard, in shard order."""
        idx = self.parts[device]
        return self.dataset.x[idx], self.dataset.y[idx]

    def device_inputs(self, device: int) -> tuple[np.ndarray, np.ndarray]:
        """What device ``device`` sends at inference time, in order: its shard as the
        scenario's stream (``data.stream``: each sample held for some frames, with noise);
        the one derivation the caching stage, the agents and the simulator share."""
        x, y = self.device_arrays(device)
        return stream_inputs(x, y, self.stream, device)


def stream_inputs(
    x: np.ndarray, y: np.ndarray, stream: tuple[int, float, int, bool], device: int
) -> tuple[np.ndarray, np.ndarray]:
    """Device ``device``'s shard ``x, y`` as its inference stream; ``stream`` is (frames per
    sample, noise, scenario seed, shuffle) from ``data.stream`` and the dataset.

    ``shuffle``: the shard arrives in a seeded random order, not in the dataset's storage
    order (bundled MNIST is stored by label, so a shard in index order is a run of 0s,
    then 1s, ...: redundancy no camera sees); sequences (video, recordings) keep time order.
    """
    frames, noise, seed, shuffle = stream
    rng_seed = seed * 1000 + device
    if shuffle and len(x) > 1:
        order = np.random.default_rng(rng_seed + 7).permutation(len(x))
        x, y = x[order], y[order]
    return dwell_stream(x, y, frames, noise, rng_seed)


def shuffled_stream(ds: Dataset) -> bool:
    """Whether devices receive their shard in a seeded random order (images and audio
    clips; not for sequences: video frames and sensor recordings keep their time order)."""
    return ds.modality in (Modality.IMAGE, Modality.AUDIO) and not ds.extra.get("sequential")


def standardization_kind(ds: Dataset, enabled: bool) -> str | None:
    """``per_feature`` for a table's columns, ``per_channel`` for sensor channels (or
    what a bundled dataset declares), ``None`` for images or when ``enabled`` is off."""
    if not enabled:
        return None
    declared = ds.extra.get("standardize")
    if declared is not None:
        return str(declared)
    if ds.modality is Modality.TABULAR:
        return "per_feature" if ds.x.ndim == 3 and ds.x.shape[1] == 1 else "per_channel"
    if ds.modality is Modality.TIMESERIES:
        return "per_channel"
    return None  # images are scaled to [0, 1] by their loaders


def _feature_names(ds: Dataset, kind: str, count: int) -> list[str]:
    key = "columns" if kind == "per_feature" else "channels"
    names = ds.extra.get(key)
    if isinstance(names, list) and len(names) == count:
        return [str(n) for n in names]
    what = "feature" if kind == "per_feature" else "channel"
    return [f"{what} {i}" for i in range(count)]


def scale_spread(x: np.ndarray, kind: str, names: list[str]) -> dict[str, Any]:
    """Spread of the features' standard deviations in ``x`` (raw values): the widest and
    narrowest feature (or channel) by name, their std and their ratio."""
    axes = (0,) if kind == "per_feature" else (0, *range(2, x.ndim))
    std = x.std(axis=axes, dtype=np.float64).reshape(-1)
    hi, lo = int(np.argmax(std)), int(np.argmin(std))
    ratio = float(std[hi] / std[lo]) if std[lo] > 0 else float("inf")
    return {
        "widest": names[hi] if hi < len(names) else str(hi),
        "widest_std": float(std[hi]),
        "narrowest": names[lo] if lo < len(names) else str(lo),
        "narrowest_std": float(std[lo]),
        "ratio": ratio,
    }


def _scale_warning(scale: dict[str, Any], standardized: bool) -> str | None:
    """A warning naming the widest and narrowest feature when they differ by more than
    ``SCALE_SPREAD`` and the model sees them unscaled."""
    if standardized or not scale["ratio"] > SCALE_SPREAD:
        return None
    return (
        f"features span very different scales: {scale['widest']!r} varies with std "
        f"{scale['widest_std']:.3g}, {scale['narrowest']!r} with {scale['narrowest_std']:.3g} "
        f"({scale['ratio']:.3g}x) and the model sees them unscaled; set data.standardize: "
        "true (the default) or rescale them"
    )


def derive_run_data(
    spec: Any, seed: int, n_devices: int | None = None, *, edge: bool, kind: str | None = None
) -> RunData:
    """Load ``spec`` (a scenario's ``DataSpec``), cut its held-out sets, preprocess and
    share the training split over ``n_devices`` devices (none when ``None``).

    ``edge``: the model is trained on the devices (federated, hierarchical, solo), so
    preprocessing statistics come from the server-held sets only; else from the central
    training split. ``kind`` (the scenario's ``task.kind``) says how a user file's labels
    are read and is checked against a bundled dataset's target (``load_data``); for the
    ``anomaly`` kind the training split (and so every device's shard) keeps normal samples
    only, the anomalies in it are excluded (``RunSplits.anomalies_excluded``): a detector
    learns normal behaviour, and anomaly labels serve evaluation and validation only.
    Splits and partitions are stratified on ``Dataset.strata`` (labels, or quantile bins of
    real-valued targets). Deterministic in ``spec``, ``seed`` and ``kind``.
    """
    ds = load_data(spec, seed=seed, kind=kind)
    splits: RunSplits = spec.splits(ds, seed)
    if kind == "anomaly" and ds.target is Target.ANOMALY:
        splits = splits.normal_training(ds.y)
    kind = standardization_kind(ds, bool(getattr(spec, "standardize", True)))
    scaler = None
    record = None
    scale = None
    warnings: list[str] = []
    names_kind = kind or ("per_feature" if ds.modality is Modality.TABULAR else "per_channel")
    fit_idx = np.sort(np.concatenate([splits.val, splits.server])) if edge else splits.train
    if ds.modality is not Modality.IMAGE and len(fit_idx):
        fit_rows = ds.x[fit_idx]
        count = int(np.prod(ds.x.shape[1:])) if names_kind == "per_feature" else ds.x.shape[1]
        scale = scale_spread(fit_rows, names_kind, _feature_names(ds, names_kind, count))
        note = _scale_warning(scale, standardized=kind is not None)
        if note is not None:
            warnings.append(note)
    if kind is not None:
        scaler = fit_standardizer(ds.x[fit_idx], kind)
        ds.x = scaler.apply(ds.x)
        record = {
            **scaler.to_json(),
            "fitted_on": FIT_EDGE if edge else FIT_CENTRAL,
            "samples": len(fit_idx),
        }
    parts: tuple[np.ndarray, ...] = ()
    if n_devices is not None:
        train = splits.train
        p = spec.partition
        local = partition(
            ds.strata[train],
            n_devices,
            kind=str(p.kind),
            seed=seed,
            groups=None if ds.groups is None else ds.groups[train],
            alpha=p.alpha,
            min_samples=p.min_samples,
        )
        parts = tuple(train[part] for part in local)
    st = getattr(spec, "stream", None)
    frames, noise = (1, 0.0) if st is None else (int(st.frames_per_sample), float(st.noise))
    stream = (frames, noise, seed, shuffled_stream(ds))
    return RunData(ds, splits, parts, scaler, record, scale, tuple(warnings), stream)


def check_preprocessing(recorded: Any, derived: Standardizer | None, where: str) -> None:
    """Refuse (``ConfigError``) when a model's recorded preprocessing (its metadata's
    ``preprocess``) differs from what the derivation computes here: the model would see
    inputs scaled unlike its training data."""
    rec = recorded if isinstance(recorded, dict) else None
    if rec is None and derived is None:
        return
    if rec is not None and derived is not None:
        theirs = Standardizer.from_json(rec)
        if (
            theirs.kind == derived.kind
            and theirs.mean.shape == derived.mean.shape
            and np.allclose(theirs.mean, derived.mean, rtol=1e-9, atol=0)
            and np.allclose(theirs.std, derived.std, rtol=1e-9, atol=0)
        ):
            return
    said = "none" if rec is None else f"{rec.get('kind')} standardisation"
    here = "none" if derived is None else f"{derived.kind} standardisation"
    raise ConfigError(
        f"{where}: the model was trained on inputs preprocessed with {said}, but this "
        f"scenario's data derives {here} (different data, seed, split or data.standardize)"
    )


def input_interval_s(ds: Dataset, rate_hz: float) -> float:
    """Seconds between a device's inputs: the data's own rate (frames at the clip's fps,
    a sensor window per window duration), else ``rate_hz`` (``settings.runtime.rate_hz``)."""
    if ds.fps:
        return 1.0 / ds.fps
    if ds.sampling_rate_hz:
        return float(ds.x.shape[-1] / ds.sampling_rate_hz)
    return 1.0 / rate_hz
