"""Device profiles that name a runtime: validated at the door, candidates judged in that
runtime, the artifact delivered in its format, and a device agent running it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from edgeintel.errors import ConfigError, MissingExtraError, ModelError
from edgeintel.inference import MeasureConfig, compress
from edgeintel.inference.devices import choose_for_profiles
from edgeintel.inference.recipe import make_recipe
from edgeintel.inference.runtimes.base import get_runtime, predict_all
from edgeintel.inference.runtimes.deliver import precision_of, runtime_candidates
from edgeintel.inference.settings import CompressSettings
from edgeintel.scenario import parse_scenario
from edgeintel.topology import DeviceProfile

from ..conftest import tiny_scenario_dict
from .conftest import Trained

HAS_OPENVINO = importlib.util.find_spec("openvino") is not None


def test_profile_runtime_defaults_and_is_checked_at_the_door() -> None:
    assert parse_scenario(tiny_scenario_dict()).device_profiles["phone"].runtime == "onnxruntime"
    raw = tiny_scenario_dict()
    raw["device_profiles"]["phone"]["runtime"] = "tflite"
    with pytest.raises(ConfigError) as err:
        parse_scenario(raw)
    msg = str(err.value)
    assert "device_profiles.phone.runtime: unknown runtime 'tflite'" in msg and "\n" not in msg
    assert "executorch, litert, onnxruntime, openvino" in msg
    raw["device_profiles"]["phone"]["runtime"] = "litert"  # registered (blocked at export)
    assert parse_scenario(raw).device_profiles["phone"].runtime == "litert"


@pytest.mark.skipif(not HAS_OPENVINO, reason="openvino extra not installed")
def test_profile_gets_its_runtime_format_and_an_agent_runs_it(
    digits_cnn: Trained, tmp_path: Path
) -> None:
    """Candidates are exported to OpenVINO and measured there; the OpenVINO profile receives
    ``<name>.xml`` + ``.bin`` (the ONNX profile ``<name>.onnx``) and a device agent serves it."""
    t = digits_cnn
    recipes = [make_recipe("fp32", []), make_recipe("int8-static", ["quantize_static"])]
    results = [
        compress(t.model, r, (t.x_tr, t.y_tr), t.x_tr[:128], eval_data=(t.x_te, t.y_te),
                 measure=MeasureConfig(runs=5, warmup=1), workdir=tmp_path / "c", seed=0)
        for r in recipes
    ]  # fmt: skip
    ov = runtime_candidates(
        results, "openvino", (t.x_te, t.y_te), t.x_tr[:128], MeasureConfig(5, 1), tmp_path / "r"
    )
    assert not ov.failed and [precision_of(r.recipe) for r in ov.results] == ["fp32", "int8"]
    for r in ov.results:
        last = r.stages[-1]
        assert last.technique == "export_openvino" and last.onnx_path.endswith(".xml")
        out = predict_all(get_runtime("openvino").load(Path(last.onnx_path)), t.x_te)
        assert last.measurement.accuracy == pytest.approx(float((out.argmax(1) == t.y_te).mean()))
        assert last.measurement.latency.p50_ms > 0
    assert ov.results[1].final.onnx_bytes < 0.6 * ov.results[0].final.onnx_bytes  # int8 IR

    base = dict(compute_speed=1.0, memory_mb=512, power_compute_w=1.0, power_tx_w=1.0,
                power_idle_w=0.1, battery_j=1e4)  # fmt: skip
    profiles = {"gw": DeviceProfile(**base, runtime="openvino"), "ph": DeviceProfile(**base)}
    choices = choose_for_profiles(
        results, profiles, CompressSettings(), tmp_path / "out", by_runtime={"openvino": ov.results}
    )
    gw, ph = choices["gw"].artifact_path, choices["ph"].artifact_path
    assert (gw.suffix, ph.suffix) == (".xml", ".onnx")
    assert gw.with_suffix(".bin").is_file() and gw.with_suffix(".json").is_file()
    assert choices["gw"].search.chosen is not None
    assert choices["gw"].search.chosen.result.stages[-1].technique == "export_openvino"

    from edgeintel.onnx_files import make_session
    from edgeintel.runtime.agent import DeviceAgent, DeviceStream
    from edgeintel.runtime.store import DeviceStore

    predictor = get_runtime("openvino").load(gw)
    expected = predict_all(predictor, t.x_te[:6]).argmax(1)
    with DeviceStore(tmp_path / "s.db") as store:
        agent = DeviceAgent(
            "gw-0",
            DeviceStream(t.x_te[:6], t.y_te[:6], 0.0),
            make_session(results[0].artifact.path),  # the ONNX model (split heads, filter)
            store,
            None,
            predictor=predictor,
        )
        agent.run(limit=6)
        labels = [r.payload["label"] for r in store.pending(6)]
    assert labels == expected.tolist()


def test_blocked_runtime_says_why_in_one_line(digits_cnn: Trained, tmp_path: Path) -> None:
    results = [
        compress(digits_cnn.model, make_recipe("fp32", []), (digits_cnn.x_tr, digits_cnn.y_tr),
                 eval_data=(digits_cnn.x_te, digits_cnn.y_te), measure=MeasureConfig(5, 1),
                 workdir=tmp_path, seed=0)
    ]  # fmt: skip
    with pytest.raises(ModelError) as err:
        runtime_candidates(
            results, "litert", (digits_cnn.x_te, digits_cnn.y_te), None, MeasureConfig(5, 1),
            tmp_path,
        )  # fmt: skip
    assert "LiteRT is blocked" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(MissingExtraError, match="typing_extensions"):
        get_runtime("litert").load(tmp_path / "m.tflite")


@pytest.mark.skipif(not HAS_OPENVINO, reason="openvino extra not installed")
def test_cli_export_and_parity_on_the_users_data(digits_cnn: Trained, tmp_path: Path) -> None:
    """``edgeintel export`` writes the runtime's files; ``edgeintel parity`` prints the matrix
    on the user's own arrays and keeps it as parity.json."""
    import json

    import numpy as np
    from typer.testing import CliRunner

    from edgeintel.cli import app

    t = digits_cnn
    data = tmp_path / "d.npz"
    np.savez(data, x_test=t.x_te, y_test=t.y_te, x_calib=t.x_tr[:128])
    onnx = str(t.onnx_path)
    res = CliRunner().invoke(
        app,
        ["export", onnx, "--runtime", "openvino", "--int8", "--data", str(data),
         "--out", str(tmp_path / "e")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "openvino int8" in res.output and (tmp_path / "e" / "model_int8.bin").is_file()
    res = CliRunner().invoke(
        app,
        ["parity", onnx, "--data", str(data), "--runtime", "onnxruntime", "--runtime",
         "openvino", "--runs", "5", "--out", str(tmp_path / "p")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "reference onnxruntime fp32" in res.output and "openvino     int8" in res.output
    rows = json.loads((tmp_path / "p" / "parity.json").read_text())["rows"]
    assert [(r["runtime"], r["precision"]) for r in rows] == [
        ("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32"),
        ("openvino", "int8"),
    ]  # fmt: skip
    assert all(r["met"] and r["measurement"]["latency"]["p50_ms"] > 0 for r in rows)
