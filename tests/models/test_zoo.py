"""Model zoo: shapes, ONNX parity with PyTorch, metadata record, user factories."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeintel.errors import ModelError
from edgeintel.models import MODELS, ModelArtifact, build_model, export_onnx
from edgeintel.models.vision import VISION_MODELS
from edgeintel.onnx_files import file_sha256, make_session, onnx_predict

SHAPES = {
    "image_cnn": (3, 16, 16),
    "image_dscnn": (1, 28, 28),
    "sensor_cnn": (6, 100),
    "sensor_dscnn": (1, 64),
    "mlp": (1, 9),
    "kws_dscnn": (1, 1600),  # 0.2 s of 8 kHz audio
}


@pytest.mark.parametrize("family", sorted(SHAPES))
def test_families_output_logits(family: str) -> None:
    model = build_model(family, SHAPES[family], num_classes=7, width=8)
    out = model(torch.zeros(5, *SHAPES[family]))
    assert out.shape == (5, 7)


def test_separable_variants_are_smaller() -> None:
    def n(m: torch.nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    assert (
        n(build_model("image_dscnn", (1, 28, 28), 10, 16))
        < n(build_model("image_cnn", (1, 28, 28), 10, 16)) / 2
    )
    assert (
        n(build_model("sensor_dscnn", (6, 100), 4, 16))
        < n(build_model("sensor_cnn", (6, 100), 4, 16)) / 2
    )


@pytest.mark.parametrize("family", sorted(SHAPES))
def test_onnx_parity_and_metadata(family: str, tmp_path: Path) -> None:
    model = build_model(family, SHAPES[family], num_classes=5, width=8, seed=1)
    # move BatchNorm statistics away from identity so the exported graph has real folding to do
    model.train()
    with torch.no_grad():
        model(torch.randn(32, *SHAPES[family]))
    model.eval()
    labels = [f"c{i}" for i in range(5)]
    art = export_onnx(model, SHAPES[family], tmp_path / "m.onnx", labels)
    x = np.random.default_rng(0).normal(size=(9, *SHAPES[family])).astype(np.float32)
    ort_out = onnx_predict(make_session(art.path), x)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ort_out, ref, rtol=1e-4, atol=1e-5)
    assert art.sha256 == file_sha256(art.path) and art.bytes == Path(art.path).stat().st_size
    assert art.input_shape == list(SHAPES[family]) and art.labels == labels
    record = json.loads((tmp_path / "m.json").read_text())
    assert ModelArtifact(**record) == art


def test_registry_has_the_zoo() -> None:
    # the torchvision families (tests/models/test_vision.py) register beside the small zoo
    assert set(SHAPES) | set(VISION_MODELS) == set(MODELS.names())


def test_user_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mymodels.py").write_text(
        "import torch\n"
        "def tiny(input_shape, num_classes):\n"
        "    n = 1\n"
        "    for d in input_shape: n *= d\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(n, num_classes))\n"
        "def wrong(input_shape, num_classes):\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    model = build_model("mymodels:tiny", (1, 8, 8), 10)
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    with pytest.raises(ModelError, match=r"output shape \(3,\) does not match 10 classes"):
        build_model("mymodels:wrong", (1, 8, 8), 10)
    with pytest.raises(ModelError, match="has no function 'nope'"):
        build_model("mymodels:nope", (1, 8, 8), 10)
    with pytest.raises(ModelError, match=r"cannot import module 'no_such_pkg\.mod'"):
        build_model("no_such_pkg.mod:fn", (1, 8, 8), 10)
    sys.modules.pop("mymodels", None)


def test_wrong_input_rank() -> None:
    with pytest.raises(ModelError, match=r"input shape must be \(channels, samples\)"):
        build_model("sensor_cnn", (1, 8, 8), 3)


def test_corrupt_model_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        make_session(bad)
    with pytest.raises(ModelError, match="model file not found"):
        make_session(tmp_path / "none.onnx")
