"""`edgeintel compress` and the `compress` stage of `edgeintel run` on a tiny real scenario."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from edgeintel.cli import app

from ..conftest import tiny_scenario_dict


def _scenario(tmp_path: Path, **compress: object) -> Path:
    raw = tiny_scenario_dict()
    raw["task"]["width"] = 8
    raw["device_profiles"]["watch"] = {**raw["device_profiles"]["phone"], "compute_speed": 0.05}
    raw["settings"]["inference"]["compress"] = compress
    p = tmp_path / "sc.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


@pytest.mark.slow
def test_compress_command_writes_artifacts_and_report(tmp_path: Path) -> None:
    sc = _scenario(tmp_path, budget={"min_accuracy": 0.5})
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app,
        [
            "compress",
            str(sc),
            "--device",
            "watch",
            "--out",
            str(out),
            "--runs",
            "5",
            "--max-kb",
            "20",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "watch: Pareto front and verdicts" in res.output
    assert (out / "watch.onnx").is_file() and (out / "watch.json").is_file()
    assert (out / "watch.onnx").stat().st_size <= 20 * 1024
    assert not (out / "phone.onnx").exists()
    data = json.loads((out / "search.json").read_text())
    assert data["per_profile"]["watch"]["chosen"] != "fp32"
    assert data["per_profile"]["watch"]["rejected"]["fp32"].startswith("misses bytes")
    assert "data:image/png;base64," in (out / "report.html").read_text()
    assert (out / "pareto_watch.png").stat().st_size > 1000


@pytest.mark.slow
def test_run_stage_one_artifact_per_profile(tmp_path: Path) -> None:
    sc = _scenario(tmp_path)
    runs = tmp_path / "runs"
    res = CliRunner().invoke(app, ["run", str(sc), "--runs-dir", str(runs), "--run-id", "c", "-q"])
    assert res.exit_code == 0, res.output
    results = json.loads((runs / "c" / "results.json").read_text())
    assert "compress" in results["stages"]
    per = results["compression"]["per_profile"]
    assert set(per) == {"phone", "watch"}
    for name in per:
        assert (runs / "c" / "compress" / f"{name}.onnx").is_file()
    # the watch is 5x slower than the phone: same choice rule, latency scaled
    assert per["watch"]["latency_ms_device"] > per["phone"]["latency_ms_device"]
    assert "Pareto front for watch" in (runs / "c" / "report.html").read_text()


def test_bad_inputs_give_one_line_and_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    cases = [
        (["compress", str(tmp_path / "none.onnx"), "--dataset", "digits"], "model file not found"),
        (["compress", str(tmp_path / "model.pt")], "model or scenario file not found"),
    ]
    corrupt = tmp_path / "bad.onnx"
    corrupt.write_bytes(b"not a model at all")
    cases.append((["compress", str(corrupt), "--dataset", "digits"], "not a valid ONNX model"))
    sc = _scenario(tmp_path)
    cases.append(
        (["compress", str(sc), "--device", "toaster"], "--device 'toaster': unknown device")
    )
    cases.append((["compress", str(sc), "--min-accuracy", "2"], "--min-accuracy: expected"))
    for args, message in cases:
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        assert message in res.output, (args, res.output)
        assert "Traceback" not in res.output


def test_onnx_without_split_record_is_refused(tmp_path: Path) -> None:
    from edgeintel.models import build_model, export_onnx

    p = export_onnx(
        build_model("image_cnn", (1, 8, 8), 10, 4),
        (1, 8, 8),
        tmp_path / "m.onnx",
        [str(i) for i in range(10)],
    )
    before = (tmp_path / "m.json").read_bytes()
    res = CliRunner().invoke(app, ["compress", p.path, "--dataset", "digits"])
    assert res.exit_code == 2, res.output
    assert "no record of the data split m.onnx was trained on" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert (tmp_path / "m.json").read_bytes() == before


@pytest.mark.slow
def test_onnx_from_a_run_is_evaluated_on_its_own_test_split(tmp_path: Path) -> None:
    """The exported model records its split; compress reproduces it and never rewrites m.json."""
    raw = tiny_scenario_dict()
    raw["settings"]["training"]["mode"] = "central"
    raw["settings"]["inference"]["compress"] = {"enabled": False}
    sc = tmp_path / "sc.yaml"
    sc.write_text(yaml.safe_dump(raw))
    runs = tmp_path / "runs"
    res = CliRunner().invoke(app, ["run", str(sc), "--runs-dir", str(runs), "--run-id", "r", "-q"])
    assert res.exit_code == 0, res.output
    model = runs / "r" / "model.onnx"
    meta_before = model.with_suffix(".json").read_bytes()
    record = json.loads(meta_before)["extra"]["data_split"]
    assert record["sizes"]["test"] == 100
    out = tmp_path / "o"
    res = CliRunner().invoke(
        app, ["compress", str(model), "--out", str(out), "--runs", "5", "--dataset", "digits"]
    )
    assert res.exit_code == 0, res.output
    assert model.with_suffix(".json").read_bytes() == meta_before
    search = json.loads((out / "search.json").read_text())
    assert search["splits"]["test"] == 100
    assert search["splits"]["validation"] == record["sizes"]["validation"]
    # the fp32 candidate's test accuracy equals the run's own ONNX test accuracy
    results = json.loads((runs / "r" / "results.json").read_text())
    fp32 = next(c for c in search["candidates"] if c["label"] == "fp32")
    assert fp32["test_accuracy"] == pytest.approx(results["evaluation"]["accuracy_onnx"])
    wrong = CliRunner().invoke(app, ["compress", str(model), "--dataset", "mnist"])
    assert wrong.exit_code == 2 and "was trained on 'digits'" in wrong.output


@pytest.mark.slow
def test_unmeetable_budget_names_closest(tmp_path: Path) -> None:
    sc = _scenario(tmp_path)
    res = CliRunner().invoke(
        app,
        [
            "compress",
            str(sc),
            "--device",
            "watch",
            "--out",
            str(tmp_path / "o"),
            "--runs",
            "5",
            "--max-latency-ms",
            "0.001",
        ],
    )
    assert res.exit_code == 2
    assert "no candidate meets the budget for device profile 'watch': closest is" in res.output
    assert "misses latency" in res.output
