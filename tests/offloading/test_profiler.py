"""The ONNX Runtime per-layer profile: every node timed, calibrated, scaled, saved, loaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeintel.errors import ConfigError, DataError
from edgeintel.models import build_model, export_onnx
from edgeintel.offloading.graph import load_layer_graph
from edgeintel.offloading.profiler import ModelProfile, profile_model


def test_profile_times_every_layer_and_scales_by_speed(tmp_path: Path) -> None:
    shape = (3, 16, 16)
    path = export_onnx(
        build_model("image_cnn", shape, 3, width=8), shape, tmp_path / "m.onnx", list("abc")
    ).path
    g = load_layer_graph(path)
    prof = profile_model(path, graph=g, runs_per_round=5, min_rounds=2, max_rounds=4)
    assert prof.node_names == list(g.names)
    assert 2 <= prof.rounds <= 4
    ms = np.asarray(prof.node_ms)
    convs = [i for i, op in enumerate(g.ops) if op == "Conv"]
    assert np.all(ms[convs] > 0)  # every conv was timed
    assert ms.sum() == pytest.approx(prof.full_ms, rel=1e-6)  # calibrated to the whole model
    np.testing.assert_allclose(prof.on(0.25), ms * 4)
    # intermediate sizes: the first conv's output is width x 16 x 16 floats
    first = next(t for t in g.tensors if t.producer == convs[0])
    assert first.bytes == 8 * 16 * 16 * 4
    # a profile measured on a real device is saved with its speed and loaded instead
    dev = ModelProfile(**{**prof.__dict__, "reference_speed": 0.25, "measured_on": "phone"})
    p = dev.save(tmp_path / "phone.json")
    back = ModelProfile.load(p, g)
    np.testing.assert_allclose(back.on(0.25), ms)  # no scaling on the device it came from
    other = load_layer_graph(
        export_onnx(build_model("mlp", (4,), 3), (4,), tmp_path / "o.onnx", list("abc")).path
    )
    with pytest.raises(ConfigError, match="do not match"):
        ModelProfile.load(p, other)
    with pytest.raises(DataError, match=r"none\.json: file not found"):
        ModelProfile.load(tmp_path / "none.json")
