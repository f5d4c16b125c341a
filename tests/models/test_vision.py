"""The torchvision-based families: registered, realistic size, 96x96 minimum, ONNX export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgeintel.errors import ModelError
from edgeintel.models import MODELS, build_model, count_params, export_onnx
from edgeintel.onnx_files import make_session

PARAMS = {"mobilenet_v3_small": 1.5e6, "resnet18": 11.2e6, "googlenet": 5.6e6}


@pytest.mark.parametrize("family", sorted(PARAMS))
def test_vision_family_builds_with_its_published_size(family: str) -> None:
    assert family in MODELS
    model = build_model(family, (3, 96, 96), num_classes=3, seed=0)
    assert count_params(model) == pytest.approx(PARAMS[family], rel=0.05)
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 96, 96)).shape == (2, 3)


def test_small_or_grey_images_are_refused_with_the_fix() -> None:
    with pytest.raises(ModelError, match=r"at least 96x96, got 32x32; set data.image_size"):
        build_model("resnet18", (3, 32, 32), 3)
    with pytest.raises(ModelError, match=r"needs \(3, H, W\) RGB images"):
        build_model("mobilenet_v3_small", (1, 96, 96), 3)


def test_mobilenet_exports_and_matches_onnx(tmp_path: Path) -> None:
    model = build_model("mobilenet_v3_small", (3, 96, 96), 3, seed=1)
    art = export_onnx(model, (3, 96, 96), tmp_path / "m.onnx", ["a", "b", "c"])
    x = np.random.default_rng(0).standard_normal((1, 3, 96, 96)).astype(np.float32)
    out = make_session(art.path).run(None, {"input": x})[0]
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-4)
