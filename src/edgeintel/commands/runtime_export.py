"""What ``edgeintel export ART --runtime R`` and ``edgeintel parity MODEL`` do (the CLI prints).

A model is given as

* a **run folder** (``runs/<id>``): its ``model.onnx`` and, for runtimes that export from
  PyTorch, the model rebuilt from its scenario's task and ``model.pt``; data: the split
  recorded at export (test split for parity, the training split -- the server-held one for
  an edge-trained model -- for int8 calibration);
* an **ONNX file** (``.onnx``): ONNX-converting runtimes only; data: its ``.json`` record's
  split, or the user's own arrays (``--data``);
* a **PyTorch program** (``.pt2``, ``torch.export.save``): ExecuTorch only.

The user's own data is an ``.npz`` with ``x_test``, ``y_test`` and, for int8, ``x_calib``
(float32 samples shaped like the model's input, integer labels).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeintel.errors import ConfigError, DataError, EdgeIntelError, ModelError
from edgeintel.inference.runtimes import PRECISIONS, RUNTIMES
from edgeintel.inference.runtimes.base import ExportSource, get_runtime

__all__ = ["ModelInput", "export_model", "open_model", "parity_of"]


@dataclass(frozen=True)
class ModelInput:
    """A model to export and the real data it is checked and calibrated on (where known)."""

    source: ExportSource
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    x_calib: np.ndarray | None = None
    data_from: str = ""


def _run_model(folder: Path) -> ModelInput:
    from edgeintel.commands.compress_target import recorded_split
    from edgeintel.records import open_run
    from edgeintel.scenario import parse_scenario

    run = open_run(folder, "MODEL")
    raw = run.scenario()
    sc = parse_scenario(raw.data, base_dir=folder, source=str(raw.source))
    art = run.model()
    shape = tuple(art.input_shape)
    model = None
    weights = folder / "model.pt"
    if weights.is_file():
        import torch

        from edgeintel.models import build_model

        outputs = sc.task.task_kind().outputs(len(art.labels), shape)
        model = build_model(sc.task.model, shape, outputs, sc.task.width, sc.seed)
        try:
            model.load_state_dict(torch.load(weights, weights_only=True))
        except (RuntimeError, OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0][:160]
            raise ModelError(f"{weights}: not the weights of {sc.task.model} ({first})") from None
        model.eval()
    ds, sp, role = recorded_split(Path(art.path), None)
    fit = sp.server if role == "server" else sp.train
    return ModelInput(
        ExportSource(Path(art.path), shape, model),
        ds.x[sp.test],
        ds.y[sp.test],
        ds.x[fit] if len(fit) else None,
        f"{ds.name}: the run's test split ({len(sp.test)}), calibration on its "
        f"{'server-held' if role == 'server' else 'training'} split ({len(fit)})",
    )


def _user_data(path: Path, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    if path.suffix.lower() != ".npz" or not path.is_file():
        raise ConfigError(f"--data {path}: expected an existing .npz file (x_test, y_test)")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"--data {path}: not a readable .npz ({exc})") from None
    for key in ("x_test", "y_test"):
        if key not in arrays:
            raise DataError(f"--data {path}: no array {key!r} (has {', '.join(arrays) or 'none'})")
    for key in ("x_test", "x_calib"):
        if key in arrays and tuple(arrays[key].shape[1:]) != shape:
            raise DataError(
                f"--data {path}: {key} samples are shaped {tuple(arrays[key].shape[1:])}; the "
                f"model takes {shape}"
            )
    if len(arrays["x_test"]) != len(arrays["y_test"]) or len(arrays["y_test"]) == 0:
        raise DataError(f"--data {path}: x_test and y_test must hold the same number (>0) of rows")
    return arrays


def open_model(target: Path, data: Path | None = None) -> ModelInput:
    """The model ``target`` (run folder, ``.onnx`` or ``.pt2``) and its real data: the
    user's ``data`` (.npz) where given, else the split its record names (where it has one)."""
    if not target.exists():
        raise ConfigError(f"MODEL {target}: no such file or folder")
    if target.is_dir():
        base = _run_model(target)
    elif target.suffix.lower() == ".onnx":
        from edgeintel.inference.measure import load_onnx

        graph = load_onnx(target).graph  # missing or corrupt -> one line
        dims = graph.input[0].type.tensor_type.shape.dim[1:]
        shape = tuple(int(d.dim_value) for d in dims)
        base = ModelInput(ExportSource(target, shape, None))
        if data is None and target.with_suffix(".json").is_file():
            from edgeintel.commands.compress_target import recorded_split

            ds, sp, role = recorded_split(target, None)
            fit = sp.server if role == "server" else sp.train
            base = ModelInput(
                base.source, ds.x[sp.test], ds.y[sp.test], ds.x[fit] if len(fit) else None,
                f"{ds.name}: the recorded test split ({len(sp.test)}), calibration on its "
                f"{'server-held' if role == 'server' else 'training'} split ({len(fit)})",
            )  # fmt: skip
    elif target.suffix.lower() == ".pt2":
        base = _program(target)
    else:
        raise ConfigError(
            f"MODEL {target}: expected a run folder, an .onnx file or a .pt2 PyTorch program"
        )
    if data is None:
        return base
    arrays = _user_data(data, base.source.input_shape)
    return ModelInput(
        base.source,
        arrays["x_test"].astype(np.float32),
        arrays["y_test"],
        arrays["x_calib"].astype(np.float32) if "x_calib" in arrays else None,
        f"{data.name}: {len(arrays['y_test'])} test samples",
    )


def _program(path: Path) -> ModelInput:
    import torch

    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    try:
        program = torch.export.load(str(path))
    except Exception as exc:
        raise ModelError(f"{path}: not a torch.export program ({exc.__class__.__name__})") from None
    example = program.example_inputs[0][0] if program.example_inputs else None
    if example is None:
        raise ModelError(f"{path}: the program records no example input (its input shape)")
    shape = tuple(int(d) for d in example.shape[1:])
    return ModelInput(ExportSource(path.with_suffix(".onnx"), shape, program.module()))


def export_model(
    model: ModelInput, runtime: str, int8: bool, out_dir: Path
) -> tuple[Path, list[Path]]:
    """Export ``model`` to ``runtime`` (int8 with the runtime's quantizer, calibrated on the
    model's real calibration samples) into ``out_dir``; the artifact and all its files."""
    RUNTIMES.check(runtime)
    rt = get_runtime(runtime)
    precision = "int8" if int8 else "fp32"
    calib = model.x_calib if int8 else None
    if int8 and calib is None:
        raise ConfigError(
            "--int8 calibrates on real samples: give a run folder, an .onnx with its data "
            "record, or --data FILE.npz with x_calib"
        )
    _check_source(model, [rt.name])
    artifact = rt.export(model.source, out_dir, precision, calib)
    return artifact, [p for p in rt.files(artifact) if p.is_file()]


def _from_torch(name: str) -> bool:
    try:
        return get_runtime(name).from_torch
    except EdgeIntelError:  # a missing extra: its row says so
        return False


def _check_source(model: ModelInput, names: list[str]) -> None:
    """One line when a runtime in ``names`` cannot start from what ``model`` holds."""
    for name in names:
        torch_side = _from_torch(name)
        if torch_side and model.source.model is None:
            raise ConfigError(
                f"--runtime {name} exports from the PyTorch model; give a run folder (with "
                "its model.pt) or a .pt2 program"
            )
        if not torch_side and not model.source.onnx_path.is_file():
            raise ConfigError(f"--runtime {name} converts ONNX; give a run folder or an .onnx file")


def parity_of(
    model: ModelInput,
    runtimes: list[str] | None,
    out_dir: Path | None,
    runs: int,
) -> Any:
    """The parity matrix of ``model`` on its real test data (``ParityReport``)."""
    from edgeintel.inference.parity import parity_matrix

    if model.x_test is None or model.y_test is None:
        raise ConfigError(
            "parity needs real test data: give a run folder, an .onnx with its data record, "
            "or --data FILE.npz (x_test, y_test)"
        )
    names = list(runtimes) if runtimes else RUNTIMES.names()
    for name in names:
        RUNTIMES.check(name)
    if runtimes is None and not model.source.onnx_path.is_file():  # a .pt2: PyTorch runtimes
        names = [n for n in names if _from_torch(n)]
    if runtimes:  # named runtimes must fit the model; by default a row says why one cannot
        _check_source(model, names)
    return parity_matrix(
        model.source,
        model.x_test,
        model.y_test,
        model.x_calib,
        runtimes=names,
        precisions=PRECISIONS,
        out_dir=out_dir,
        measure={"runs": runs, "warmup": max(1, runs // 10)},
    )
