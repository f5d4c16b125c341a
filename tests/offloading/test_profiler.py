"""The ONNX Runtime per-layer profile: every node timed, calibrated, scaled, saved, loaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeintel.errors import ConfigError, DataError
from edgeintel.models import build_model, export_onnx
from edgeintel.offloading.costs import LinkState, Power
from edgeintel.offloading.graph import load_layer_graph
from edgeintel.offloading.planner import OffloadPlanner, Target
from edgeintel.offloading.profiler import ModelProfile, _fastest_agree, profile_model
from edgeintel.offloading.settings import OffloadingSettings

from .conftest import random_dag


def test_profile_times_every_layer_and_scales_by_speed(tmp_path: Path) -> None:
    shape = (3, 16, 16)
    path = export_onnx(
        build_model("image_cnn", shape, 3, width=8), shape, tmp_path / "m.onnx", list("abc")
    ).path
    g = load_layer_graph(path)
    prof = profile_model(path, graph=g, runs_per_round=5, min_rounds=2, max_rounds=4)
    assert prof.node_names == list(g.names)
    assert 2 <= prof.rounds <= 4
    assert prof.spread >= 1.0 and isinstance(prof.stable, bool)
    # the fastest round and the fastest whole-model window calibrate the profile
    assert prof.full_ms == pytest.approx(min(prof.extra["whole_model_windows_ms"]), rel=1e-3)
    assert prof.raw_sum_ms == pytest.approx(min(prof.extra["round_totals_ms"]), rel=1e-3)
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


def test_serialization_scales_with_the_device_and_an_unstable_profile_is_said(
    tmp_path: Path,
) -> None:
    g = random_dag(6, 0)
    prof = ModelProfile(
        "sha", list(g.names), [1.0] * 6, 6.0, 6.0, 3, 0.2, 0.5, spread=3.1, stable=False
    )
    # a device 20x slower than this machine packs 1 MB in 4 ms, not 0.2 ms
    assert prof.serialize_on(0.05) == pytest.approx(4.0)
    assert prof.serialize_on(0.05, int8=True) == pytest.approx(10.0)
    planner = OffloadPlanner(g, prof, OffloadingSettings())
    ctx = planner.context(0.05, Power(1.0, 1.0, 0.1), Target("e", "d2e", 2.0, LinkState(10, 5)))
    assert ctx.serialize_ms_per_mb == pytest.approx(4.0)
    note = prof.stability_note()
    assert note is not None and "3.1x" in note
    back = ModelProfile.load(prof.save(tmp_path / "p.json"), g)
    assert (back.spread, back.stable) == (3.1, False)
    assert ModelProfile(**{**prof.__dict__, "stable": True}).stability_note() is None


def test_the_fastest_windows_decide() -> None:
    # one load spike (3x) among the rounds does not move the profile: the fastest two agree
    assert _fastest_agree([30.0, 10.0, 10.5], 0.1)
    assert not _fastest_agree([30.0, 10.0, 14.0], 0.1)
    assert not _fastest_agree([10.0], 0.1)


def test_load_does_not_move_the_calibration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every window's median 6x its fastest run (a loaded shared machine): the profile is
    calibrated to the fastest run, what a device running alone sees, not to a median."""
    import edgeintel.offloading.profiler as profiler
    from edgeintel.latency import _percentiles

    shape = (3, 16, 16)
    path = export_onnx(
        build_model("image_cnn", shape, 3, width=4), shape, tmp_path / "m.onnx", list("abc")
    ).path

    def loaded(*_: object, runs: int, **__: object) -> object:
        return _percentiles(np.array([0.5] + [3.0] * (runs - 1)))  # one clean run, then load

    monkeypatch.setattr(profiler, "measure_latency", loaded)
    prof = profile_model(path, runs_per_round=3, min_rounds=2, max_rounds=2)
    assert prof.full_ms == pytest.approx(0.5) and sum(prof.node_ms) == pytest.approx(0.5)
    assert prof.stable is not None
