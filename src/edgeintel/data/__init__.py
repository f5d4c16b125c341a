"""Bundled real datasets, device partitioners and device-side data streams."""

from edgeintel.data.datasets import (
    DATASETS,
    TARGET_OF_KIND,
    Dataset,
    Modality,
    Target,
    load_data,
    load_dataset,
    video_path,
)
from edgeintel.data.files import load_file
from edgeintel.data.partition import (
    PARTITIONERS,
    label_skew,
    partition,
    train_test_split,
)
from edgeintel.data.split import (
    RunSplits,
    Standardizer,
    fit_standardizer,
    group_split,
    holdout_split,
    run_splits,
    segment_split,
)
from edgeintel.data.streams import Frame, Window, frame_stream, sensor_stream, sliding_windows

__all__ = [
    "DATASETS",
    "PARTITIONERS",
    "TARGET_OF_KIND",
    "Dataset",
    "Frame",
    "Modality",
    "RunSplits",
    "Standardizer",
    "Target",
    "Window",
    "fit_standardizer",
    "frame_stream",
    "group_split",
    "holdout_split",
    "label_skew",
    "load_data",
    "load_dataset",
    "load_file",
    "partition",
    "run_splits",
    "segment_split",
    "sensor_stream",
    "sliding_windows",
    "train_test_split",
    "video_path",
]
