"""A user's own data files: NPZ, CSV / Parquet tables and folders of class-named images.

``target`` (``Target``) says how the label column / ``y`` array is read: class ids or
names (``label``), real values (``value``: regression) or anomaly flags (``anomaly``:
0 / false / ``normal`` is normal, 1 / true / any other name an anomaly). Every problem is
a one-line ``DataError`` naming the file and what is expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeintel.data.datasets import ANOMALY_CLASSES, Dataset, Modality, Target
from edgeintel.errors import DataError, EdgeIntelError
from edgeintel.extras import require

__all__ = ["load_file"]


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


def _values_from(labels: Any, where: str) -> np.ndarray:
    """Real-valued targets, (N,) or (N, K), finite; else a one-line DataError."""
    try:
        values = np.asarray(labels, dtype=np.float64)
    except (ValueError, TypeError):
        raise DataError(f"{where}: regression targets must be numbers") from None
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim not in (1, 2):
        raise DataError(f"{where}: expected targets shaped (N,) or (N, K), got {values.shape}")
    bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    if bad.any():
        raise DataError(
            f"{where}: {int(bad.sum())} target(s) are missing or not finite (NaN/inf), "
            f"first at row {int(np.argmax(bad))}"
        )
    return values


def _flags_from(labels: Any, where: str) -> np.ndarray:
    """Anomaly flags (int64, 1 = anomaly): numbers / booleans are anomalous when non-zero,
    strings when they are not ``normal``."""
    values = _check_labels(labels, where)
    if values.dtype.kind in "US" or values.dtype.kind == "O":
        return np.array([str(v) != "normal" for v in values.tolist()], dtype=np.int64)
    return (values != 0).astype(np.int64)


def _targets(labels: Any, where: str, target: Target, name: str) -> tuple[np.ndarray, list[str]]:
    """``(y, classes)`` of the label column read as ``target``."""
    if target is Target.VALUE:
        values = _values_from(labels, where)
        classes = [name] if values.ndim == 1 else [f"{name}[{k}]" for k in range(values.shape[1])]
        return values, classes
    if target is Target.ANOMALY:
        return _flags_from(labels, where), list(ANOMALY_CLASSES)
    return _classes_from(labels, where)


def _from_table(
    df: Any,
    path: Path,
    label_column: str,
    group_column: str | None,
    shape: list[int] | None,
    target: Target,
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
    y, classes = _targets(
        df[label_column].to_numpy(), f"{path}: label column {label_column!r}", target, label_column
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
        target=target,
    )


def _from_npz(path: Path, shape: list[int] | None, target: Target) -> Dataset:
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
    y, classes = _targets(arrays[yk], f"{path}: {yk!r}", target, yk)
    groups = _classes_from(arrays["groups"], f"{path}: 'groups'")[0] if "groups" in keys else None
    modality = Modality.IMAGE if x.ndim == 4 else Modality.TIMESERIES
    return Dataset(
        path.stem, x, y, classes, modality, groups=groups, source=str(path), target=target
    )


_IMAGES = {".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm"}


def _from_image_folder(path: Path, size: int, target: Target) -> Dataset:
    cv2 = require("cv2", "an image-folder dataset")

    class_dirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{path}: an image folder needs one sub-folder per class")
    if target is Target.VALUE:
        raise DataError(
            f"{path}: an image folder holds class labels (one sub-folder per class), not "
            "real-valued targets; give regression data as NPZ, CSV or Parquet"
        )
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
    names = [d.name for d in class_dirs]
    y = np.array(ys)
    if target is Target.ANOMALY:  # a folder named 'normal' holds the normal images
        y = _flags_from(np.array(names)[y], f"{path}: class folders")
        names = list(ANOMALY_CLASSES)
    return Dataset(
        path.name, np.stack(xs), y, names, Modality.IMAGE, source=str(path), target=target
    )


def load_file(
    path: str | Path,
    label_column: str = "label",
    group_column: str | None = None,
    shape: list[int] | None = None,
    image_size: int = 32,
    target: Target = Target.LABEL,
) -> Dataset:
    """Load a user's NPZ / CSV / Parquet file or a folder of class-named image folders,
    reading its labels as ``target``."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"data file not found: {p}")
    if p.is_dir():
        return _from_image_folder(p, image_size, target)
    suffix = "".join(p.suffixes[-2:]).lower() if p.suffix == ".gz" else p.suffix.lower()
    if suffix == ".npz":
        return _from_npz(p, shape, target)
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
    return _from_table(df, p, label_column, group_column, shape, target)
