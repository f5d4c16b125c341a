"""Device runtimes: export and load per runtime, the parity matrix on real data, and layer
localisation (a divergence planted at a known layer; a broken conversion random inputs pass)."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from edgeintel.errors import ConfigError, MissingExtraError
from edgeintel.inference.parity import (
    AGREEMENT_GOALS,
    ParityRow,
    compare_outputs,
    locate_divergence,
    parity_matrix,
)
from edgeintel.inference.runtimes import RUNTIMES
from edgeintel.inference.runtimes.base import ExportSource, get_runtime, predict_all
from edgeintel.inference.runtimes.measure import measure_artifact
from edgeintel.inference.runtimes.onnx_rt import ONNX_RUNTIME, node_outputs
from edgeintel.models import build_model, export_onnx
from edgeintel.models.train import TrainConfig, predict_logits, train_model

from .conftest import Trained

INSTALLED = [n for n in RUNTIMES.names() if importlib.util.find_spec(n) is not None]


def _source(t: Trained) -> ExportSource:
    return ExportSource(t.onnx_path, tuple(t.x_te.shape[1:]), t.model)


@pytest.mark.parametrize("name", INSTALLED)
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_export_load_and_run(
    name: str, precision: str, digits_cnn: Trained, tmp_path: Path
) -> None:
    """Each installed runtime exports the trained CNN, loads it and matches the fp32 model
    on the real test set (agreement at the issue's goal); the artifact has its format."""
    rt = get_runtime(name)
    calib = digits_cnn.x_tr if precision == "int8" else None
    artifact = rt.export(_source(digits_cnn), tmp_path, precision, calib)
    assert artifact.suffix == rt.suffix and all(p.is_file() for p in rt.files(artifact))
    out = predict_all(rt.load(artifact), digits_cnn.x_te)
    ref = predict_logits(digits_cnn.model, digits_cnn.x_te)
    stats = compare_outputs(ref, out, digits_cnn.y_te)
    assert stats["agreement"] >= AGREEMENT_GOALS[precision]
    if precision == "fp32":
        assert stats["max_logit_error"] < 1e-3
    else:  # int8 really is quantized: smaller than the fp32 weights, logits not bit-equal
        assert rt.size_bytes(artifact) < 0.6 * digits_cnn.onnx_path.stat().st_size
        assert stats["max_logit_error"] > 1e-3


def test_measure_artifact(digits_cnn: Trained, tmp_path: Path) -> None:
    rt = get_runtime("onnxruntime")
    artifact = rt.export(_source(digits_cnn), tmp_path, "fp32", None)
    m = measure_artifact("onnxruntime", artifact, digits_cnn.x_te[:1], runs=20, warmup=2)
    assert m.file_bytes == artifact.stat().st_size
    assert 0 < m.latency.p50_ms <= m.latency.p95_ms and m.latency.windows >= 3
    assert m.peak_memory_bytes is not None and m.peak_memory_bytes > 0


def test_parity_matrix_rows(digits_cnn: Trained) -> None:
    """One row per (runtime, precision); every installed export meets its goal on real data."""
    report = parity_matrix(
        _source(digits_cnn),
        digits_cnn.x_te,
        digits_cnn.y_te,
        digits_cnn.x_tr,
        runtimes=["onnxruntime"],
    )
    assert report.reference == "torch fp32" and report.samples == len(digits_cnn.y_te)
    assert [(r.runtime, r.precision) for r in report.rows] == [
        ("onnxruntime", "fp32"),
        ("onnxruntime", "int8"),
    ]
    assert all(r.met and r.error is None for r in report.rows)
    assert report.row("onnxruntime", "fp32").accuracy == pytest.approx(digits_cnn.accuracy)


def test_unknown_runtime_and_precision(digits_cnn: Trained) -> None:
    with pytest.raises(ConfigError, match="unknown runtime 'tflite'"):
        parity_matrix(_source(digits_cnn), digits_cnn.x_te, digits_cnn.y_te, runtimes=["tflite"])
    with pytest.raises(ConfigError, match="precision must be one of"):
        parity_matrix(_source(digits_cnn), digits_cnn.x_te, digits_cnn.y_te, precisions=["fp16"])


def test_executorch_needs_the_torch_model(digits_cnn: Trained, tmp_path: Path) -> None:
    if "executorch" not in INSTALLED:
        pytest.skip("executorch extra not installed")
    src = ExportSource(digits_cnn.onnx_path, tuple(digits_cnn.x_te.shape[1:]), None)
    report = parity_matrix(
        src, digits_cnn.x_te, digits_cnn.y_te, runtimes=["executorch"], precisions=["fp32"]
    )
    assert "exports from the PyTorch model" in (report.rows[0].error or "")


def test_missing_extra_is_one_line(
    monkeypatch: pytest.MonkeyPatch, digits_cnn: Trained, tmp_path: Path
) -> None:
    """Without the openvino package the runtime's export fails with one line naming the extra."""
    import builtins

    real_import = builtins.__import__

    def no_openvino(name: str, *args: object, **kwargs: object) -> object:
        if name.split(".")[0] == "openvino":
            raise ImportError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_openvino)
    for mod in [m for m in list(__import__("sys").modules) if m.split(".")[0] == "openvino"]:
        monkeypatch.delitem(__import__("sys").modules, mod)
    rt = get_runtime("openvino")
    with pytest.raises(MissingExtraError) as err:
        rt.export(_source(digits_cnn), tmp_path, "fp32", None)
    msg = str(err.value)
    assert "\n" not in msg and "pip install 'edgeintel[openvino]'" in msg


# ------------------------------------------------------------- broken conversions


class MinMax(nn.Module):
    """Per-sample min-max scaling to [0, 1] at the input (common in sensor and image models)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        lo = flat.min(1).values.view(-1, *([1] * (x.dim() - 1)))
        hi = flat.max(1).values.view(-1, *([1] * (x.dim() - 1)))
        return (x - lo) / (hi - lo + 1e-6)


def test_dropped_normalisation_passes_random_inputs_but_not_real_data(
    digits_cnn: Trained, tmp_path: Path
) -> None:
    """A conversion that drops the input scaling passes a random-input check (uniform [0, 1)
    inputs are already nearly min-max scaled) and the real-data parity matrix catches it.

    The real data are the digits in their raw units (pixel counts 0..16, as recorded)."""
    shape = tuple(digits_cnn.x_te.shape[1:])
    x_tr, x_te = digits_cnn.x_tr * 16, digits_cnn.x_te * 16
    net = build_model("image_cnn", shape, 10, width=16, seed=0)
    model = nn.Sequential(MinMax(), net)
    train_model(model, x_tr, digits_cnn.y_tr, TrainConfig(epochs=6, batch_size=32), seed=0)
    labels = [str(i) for i in range(10)]
    good, broken = tmp_path / "good.onnx", tmp_path / "broken.onnx"
    export_onnx(model, shape, good, labels)
    export_onnx(net, shape, broken, labels)  # the conversion that dropped the scaling
    noise = np.random.default_rng(0).random((1000, *shape), dtype=np.float32)
    ref_noise = predict_logits(model, noise)
    random_check = compare_outputs(
        ref_noise, predict_all(ONNX_RUNTIME.load(broken), noise), ref_noise.argmax(1)
    )
    assert random_check["agreement"] >= 0.95  # a random-input parity test passes

    def matrix(path: Path) -> ParityRow:
        src = ExportSource(path, shape, model)  # checked against the real model
        report = parity_matrix(
            src, x_te, digits_cnn.y_te, runtimes=["onnxruntime"], precisions=["fp32"]
        )
        return report.rows[0]

    assert matrix(good).met
    caught = matrix(broken)  # the same matrix over the broken conversion, on real data
    assert not caught.met and caught.agreement is not None and caught.agreement < 0.8
    assert caught.accuracy is not None and caught.accuracy < 0.8


def _plant(src: Path, dst: Path, layer: int, factor: float = 1.5) -> str:
    """Scale the weights of the ``layer``-th Conv/Gemm node by ``factor``; return its output."""
    model = onnx.load(str(src))
    inits = {i.name: i for i in model.graph.initializer}
    weighted = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm")]
    node = weighted[layer]
    w = inits[node.input[1]]
    w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) * factor, w.name))
    onnx.save(model, str(dst))
    return node.output[0]


@pytest.mark.parametrize("name", [n for n in INSTALLED if get_runtime(n).probe is not None])
@pytest.mark.parametrize("layer", [1, 2])
def test_layer_localisation_finds_a_planted_divergence(
    name: str, layer: int, digits_cnn: Trained, tmp_path: Path
) -> None:
    planted = tmp_path / "planted.onnx"
    tensor = _plant(digits_cnn.onnx_path, planted, layer)
    rt = get_runtime(name)
    artifact = rt.export(
        ExportSource(planted, tuple(digits_cnn.x_te.shape[1:])), tmp_path, "fp32", None
    )
    found = locate_divergence(digits_cnn.onnx_path, rt, artifact, digits_cnn.x_te[:32], 1e-3)
    assert found is not None and found.tensor == tensor
    assert found.index == node_outputs(onnx.load(str(digits_cnn.onnx_path))).index(tensor)
    # the unplanted export diverges nowhere
    clean = rt.export(_source(digits_cnn), tmp_path / "clean", "fp32", None)
    assert locate_divergence(digits_cnn.onnx_path, rt, clean, digits_cnn.x_te[:32], 1e-3) is None


def test_parity_matrix_localises_below_goal(
    digits_cnn: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A runtime whose conversion corrupts one layer: its row misses the goal on real data
    and names that layer as the first divergence."""
    planted: dict[str, str] = {}

    def export(src: ExportSource, out: Path, precision: str, calib: object) -> Path:
        out.mkdir(parents=True, exist_ok=True)
        dst = out / "model.onnx"
        planted["tensor"] = _plant(src.onnx_path, dst, 1, factor=-3.0)
        return dst

    broken = dataclasses.replace(ONNX_RUNTIME, name="broken", export=export)
    monkeypatch.setitem(RUNTIMES._items, "broken", broken)
    report = parity_matrix(
        _source(digits_cnn),
        digits_cnn.x_te,
        digits_cnn.y_te,
        runtimes=["onnxruntime", "broken"],
        precisions=["fp32"],
    )
    ok, bad = report.row("onnxruntime", "fp32"), report.row("broken", "fp32")
    assert ok.met and ok.divergence is None
    assert not bad.met and bad.divergence is not None
    assert bad.divergence.tensor == planted["tensor"] and bad.divergence.op_type == "Conv"
