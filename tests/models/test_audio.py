"""The keyword spotter: the log-mel front end against numpy's FFT, the DS-CNN's shape and
ONNX parity, and the one-line refusal of a model that cannot take the data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgeintel.errors import ModelError
from edgeintel.models import build_model
from edgeintel.models.audio import LogMel, dft_weights, hz_to_mel, mel_filterbank, mel_to_hz
from edgeintel.models.families import check_model_modality


def test_mel_scale_and_filterbank_by_hand() -> None:
    assert float(hz_to_mel(700.0)) == pytest.approx(2595 * np.log10(2))
    assert float(mel_to_hz(hz_to_mel(1234.0))) == pytest.approx(1234.0)
    fb = mel_filterbank(3, 16, 16.0, fmin=0.0)  # bins at 0, 1, ..., 8 Hz
    assert fb.shape == (3, 9) and (fb >= 0).all() and (fb <= 1).all()
    # centres at 3 of 5 equally spaced mel points between 0 and 8 Hz
    centres = mel_to_hz(np.linspace(0, hz_to_mel(8.0), 5))[1:-1]
    for row, c in zip(fb, centres, strict=True):
        assert np.argmax(row) in (int(np.floor(c)), int(np.ceil(c)))


def test_log_mel_equals_numpys_fft() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.1, (2, 1, 8000)).astype(np.float32)
    front = LogMel(8000.0)
    out = front(torch.from_numpy(x)).numpy()
    n, hop = front.n_fft, front.hop
    assert (n, hop) == (320, 160) and out.shape == (2, 1, 40, front.frames(8000))
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)
    fb = mel_filterbank(40, n, 8000.0)
    for t in (0, 17, out.shape[-1] - 1):
        frame = x[1, 0, t * hop : t * hop + n].astype(np.float64)
        power = np.abs(np.fft.rfft(frame * window)) ** 2
        ref = np.log(fb @ power + 1e-6)
        np.testing.assert_allclose(out[1, 0, :, t], ref, rtol=1e-3, atol=1e-3)
    assert dft_weights(8).shape == (10, 1, 8)
    assert not list(front.parameters())  # fixed weights: buffers, never trained or pruned


def test_kws_dscnn_shape_and_onnx_parity(tmp_path: Path) -> None:
    import onnxruntime as ort

    model = build_model("kws_dscnn", (1, 8000), 12, width=4, seed=0, sample_rate_hz=8000)
    x = torch.randn(3, 1, 8000) * 0.1
    with torch.no_grad():
        ref = model(x).numpy()
    assert ref.shape == (3, 12)
    path = tmp_path / "kws.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["input"], dynamo=False)
    out = ort.InferenceSession(str(path)).run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(out, ref, rtol=1e-3, atol=1e-4)
    # static int8 keeps the log-mel front end float (8-bit energies lose the log's range)
    import onnx

    from edgeintel.inference.quantize import log_inputs

    kept = log_inputs(onnx.load(str(path)))
    convs = [n.name for n in onnx.load(str(path)).graph.node if n.op_type == "Conv"]
    assert [c for c in convs if c in kept] == convs[:2]  # the DFT and the mel filterbank
    with pytest.raises(ModelError, match=r"mono audio shaped \(1, samples\)"):
        build_model("kws_dscnn", (2, 8000), 12)
    with pytest.raises(ModelError, match="at least"):
        build_model("kws_dscnn", (1, 400), 12)


def test_model_must_take_the_datas_modality() -> None:
    with pytest.raises(ModelError, match="does not take audio") as err:
        check_model_modality("image_cnn", "audio", "voice_commands")
    assert "kws_dscnn" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ModelError, match="takes raw audio"):
        check_model_modality("kws_dscnn", "image", "mnist")
    check_model_modality("kws_dscnn", "audio", "voice_commands")
    check_model_modality("my_models.py:net", "audio", "voice_commands")  # trusted
