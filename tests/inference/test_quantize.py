"""Post-training int8 quantization through ONNX Runtime on a CNN trained on real digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeintel.cpu import saturates_u8s8
from edgeintel.errors import ConfigError, DataError, ModelError
from edgeintel.inference import (
    QuantizeDynamicConfig,
    QuantizeStaticConfig,
    load_onnx,
    measure_onnx,
    quantize_dynamic_onnx,
    quantize_static_onnx,
)
from edgeintel.onnx_files import make_session, onnx_predict

from .conftest import Trained


def _acc(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    return float((onnx_predict(make_session(path), x).argmax(1) == y).mean())


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_static_int8_smaller_same_shape_accurate(
    digits_cnn: Trained, tmp_path: Path, method: str
) -> None:
    out = tmp_path / f"{method}.onnx"
    warns = quantize_static_onnx(
        digits_cnn.onnx_path, out, digits_cnn.x_tr[:128], QuantizeStaticConfig(calibration=method)
    )
    assert warns == []
    logits = onnx_predict(make_session(out), digits_cnn.x_te)
    assert logits.shape == (len(digits_cnn.y_te), 10)
    assert out.stat().st_size < 0.5 * digits_cnn.onnx_path.stat().st_size
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    fp32 = _acc(digits_cnn.onnx_path, digits_cnn.x_te, digits_cnn.y_te)
    assert _acc(out, digits_cnn.x_te, digits_cnn.y_te) >= fp32 - 0.03


def test_static_weights_are_int8_per_channel(digits_cnn: Trained, tmp_path: Path) -> None:
    out = tmp_path / "q.onnx"
    quantize_static_onnx(digits_cnn.onnx_path, out, digits_cnn.x_tr[:64], QuantizeStaticConfig())
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(out)).graph.initializer}
    int8 = [v for v in inits.values() if v.dtype == np.int8 and v.ndim == 4]
    assert len(int8) == 3  # three conv kernels
    # per-channel: one scale per output channel of the first conv (16 filters)
    scales = [v for k, v in inits.items() if k.endswith("_scale") and v.shape == (16,)]
    assert scales


def test_dynamic_int8(digits_cnn: Trained, tmp_path: Path) -> None:
    out = tmp_path / "d.onnx"
    quantize_dynamic_onnx(digits_cnn.onnx_path, out, QuantizeDynamicConfig())
    assert out.stat().st_size < 0.5 * digits_cnn.onnx_path.stat().st_size
    fp32 = _acc(digits_cnn.onnx_path, digits_cnn.x_te, digits_cnn.y_te)
    assert _acc(out, digits_cnn.x_te, digits_cnn.y_te) >= fp32 - 0.03


def test_calibration_data_wrong_shape_or_dtype(digits_cnn: Trained, tmp_path: Path) -> None:
    out = tmp_path / "q.onnx"
    with pytest.raises(DataError, match=r"calibration data: expected shape \(N, 1, 8, 8\)"):
        quantize_static_onnx(
            digits_cnn.onnx_path, out, digits_cnn.x_tr[:16, 0], QuantizeStaticConfig()
        )
    with pytest.raises(DataError, match=r"expected floating-point samples.*got dtype uint8"):
        quantize_static_onnx(
            digits_cnn.onnx_path,
            out,
            (digits_cnn.x_tr[:16] * 255).astype(np.uint8),
            QuantizeStaticConfig(),
        )
    assert not out.exists()


def test_missing_and_corrupt_model_files(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="model file not found"):
        load_onnx(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(ModelError, match=r"bad\.onnx: not a valid ONNX model"):
        quantize_static_onnx(
            bad, tmp_path / "q.onnx", np.zeros((4, 1, 8, 8)), QuantizeStaticConfig()
        )


def test_bad_config_values() -> None:
    with pytest.raises(ConfigError, match="calibration must be one of minmax, entropy, percentile"):
        QuantizeStaticConfig(calibration="kl")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="calib_samples must be >= 1"):
        QuantizeStaticConfig(calib_samples=0)


def _graph_with(op: str, tmp_path: Path, domain: str = "") -> Path:
    """Input (1, 4) -> Gemm(W) -> op -> output; ``op`` from ``domain``."""
    w = numpy_helper.from_array(
        np.random.default_rng(0).normal(size=(4, 4)).astype(np.float32), "W"
    )
    w2 = numpy_helper.from_array(
        np.random.default_rng(1).normal(size=(4,)).astype(np.float32), "W2"
    )
    nodes = [
        helper.make_node("Gemm", ["input", "W"], ["h"], name="gemm_0"),
        helper.make_node(op, ["h", "W2"], ["logits"], name="odd_layer", domain=domain),
    ]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])],
        [w, w2],
    )
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    m = helper.make_model(g, opset_imports=opsets)
    path = tmp_path / f"{op}.onnx"
    onnx.save(m, str(path))
    return path


def test_layer_without_int8_kernel_is_reported_and_kept(tmp_path: Path) -> None:
    # ORT's quantizer has no int8 kernel for Div: that layer must be named and kept in float
    src = _graph_with("Div", tmp_path)
    out = tmp_path / "q.onnx"
    x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    warns = quantize_static_onnx(src, out, x, QuantizeStaticConfig())
    assert any(w.startswith("odd_layer (Div): left in float32") for w in warns), warns
    assert not any("gemm_0" in w for w in warns)
    ref = onnx_predict(make_session(src), x)
    got = onnx_predict(make_session(out), x)
    assert np.abs(ref - got).max() < 0.1 * np.abs(ref).max()


@pytest.mark.parametrize(
    ("isa", "saturates"),
    [
        (["avx", "avx2", "fma"], True),  # AVX2 only: vpmaddubsw adds pairs in int16
        (["avx", "avx2", "fma", "avx512f"], True),  # AVX-512 without VNNI, likewise
        (["avx", "avx2", "avx512f", "avx512_vnni"], False),
        (["avx", "avx2", "avx_vnni"], False),
        (["neon", "asimd"], False),
        ([], False),
    ],
)
def test_saturation_is_where_x86_lacks_vnni(isa: list[str], saturates: bool) -> None:
    assert saturates_u8s8(isa) is saturates


def test_seven_bit_weights_keep_an_int8_gemm_exact_where_kernels_saturate(
    tmp_path: Path,
) -> None:
    # a Gemm whose uint8 x int8 pairs overflow int16 with full 8-bit weights: quantized
    # with reduce_range, ORT's optimized kernels agree with its reference kernels on any CPU
    import onnxruntime as ort

    src = _graph_with("Div", tmp_path)
    x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    out = tmp_path / "q7.onnx"
    quantize_static_onnx(src, out, x, QuantizeStaticConfig(reduce_range=True))
    ref = onnx_predict(make_session(src), x)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    plain = ort.InferenceSession(str(out), so, providers=["CPUExecutionProvider"])
    fused = onnx_predict(make_session(out), x)
    unfused = plain.run(None, {"input": x})[0]
    assert np.abs(fused - unfused).max() < 1e-3 * np.abs(ref).max()
    assert np.abs(ref - fused).max() < 0.05 * np.abs(ref).max()


def test_op_the_quantizer_cannot_run_gives_model_error(tmp_path: Path) -> None:
    bad = _graph_with("Frobnicate", tmp_path, domain="com.example")
    with pytest.raises(ModelError) as info:
        quantize_static_onnx(
            bad, tmp_path / "q.onnx", np.zeros((8, 4), np.float32), QuantizeStaticConfig()
        )
    msg = str(info.value)
    assert "\n" not in msg and "Frobnicate" in msg


def test_measure_reports_int8_file(digits_cnn: Trained, tmp_path: Path) -> None:
    out = tmp_path / "q.onnx"
    quantize_static_onnx(digits_cnn.onnx_path, out, digits_cnn.x_tr[:64], QuantizeStaticConfig())
    from edgeintel.inference import MeasureConfig

    m32 = measure_onnx(digits_cnn.onnx_path, *digits_cnn.test, MeasureConfig(runs=5, warmup=1))
    m8 = measure_onnx(out, *digits_cnn.test, MeasureConfig(runs=5, warmup=1))
    assert m8.params == m32.params and m8.macs == m32.macs
    assert m8.onnx_bytes == out.stat().st_size
    assert m8.peak_memory_bytes < m32.peak_memory_bytes
