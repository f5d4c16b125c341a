"""The command line users expect: --version, --set, examples, bare scenario names,
train keeps its model, live feedback (run.log, results.json after every stage), re-render."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from edgeintel.cli import app
from edgeintel.errors import ConfigError
from edgeintel.examples import apply_overrides, list_examples, load_scenario_with, resolve_scenario

from .conftest import SCENARIOS


def test_version() -> None:
    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.startswith("edgeintel ")


def test_examples_are_packaged_and_listed(tmp_path: Path) -> None:
    ex = list_examples()
    shipped = sorted(p.stem for p in SCENARIOS.glob("*.yaml"))
    assert sorted(ex) == shipped and "default" in ex
    # package data: the files live inside the edgeintel package
    assert all("edgeintel" in Path(v["path"]).parts for v in ex.values())
    res = CliRunner().invoke(app, ["examples"])
    assert res.exit_code == 0 and "city-digits" in res.output
    res = CliRunner().invoke(app, ["examples", "default", "--to", str(tmp_path)])
    assert res.exit_code == 0
    assert (tmp_path / "default.yaml").read_text() == (SCENARIOS / "default.yaml").read_text()
    res = CliRunner().invoke(app, ["examples", "default", "--to", str(tmp_path)])
    assert res.exit_code == 2 and "already exists" in res.output
    res = CliRunner().invoke(app, ["examples", "nope"])
    assert res.exit_code == 2 and "unknown example scenario 'nope'" in res.output


def test_bare_names_resolve_to_shipped_scenarios(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)  # no scenarios/ folder here
    assert resolve_scenario("default") == Path(list_examples()["default"]["path"])
    assert resolve_scenario("scenarios/wearable_health.yaml").name == "wearable_health.yaml"
    with pytest.raises(ConfigError, match="shipped scenario"):
        resolve_scenario("nosuch")
    local = tmp_path / "default"
    local.write_text("x")
    assert resolve_scenario("default") == Path("default")  # an existing file wins


def test_apply_overrides_by_hand() -> None:
    raw = {"seed": 0, "devices": [{"count": 2}], "settings": {"training": {"rounds": 10}}}
    out = apply_overrides(
        raw, ["seed=3", "devices.0.count=50", "settings.training.rounds=5",
              "settings.inference.compress.enabled=false", "description=two words"],
    )  # fmt: skip
    assert out["seed"] == 3 and out["devices"][0]["count"] == 50
    assert out["settings"]["training"]["rounds"] == 5
    assert out["settings"]["inference"]["compress"]["enabled"] is False
    assert out["description"] == "two words"
    assert raw["seed"] == 0  # the input is not changed
    for bad, msg in [
        ("seed", "expected key.path=value"),
        ("devices.3.count=1", "list index below 1"),
        ("seed.x=1", "'seed' is a value"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            apply_overrides(raw, [bad])


def test_set_is_validated_like_the_file(tiny_scenario_file: Path) -> None:
    sc = load_scenario_with(tiny_scenario_file, ["settings.training.rounds=4", "seed=9"])
    assert sc.settings.training.rounds == 4 and sc.seed == 9
    res = CliRunner().invoke(
        app, ["run", str(tiny_scenario_file), "--set", "settings.training.rounds=0"]
    )
    assert res.exit_code == 2
    assert "settings.training.rounds" in res.output and "greater than or equal to 1" in res.output
    assert "Traceback" not in res.output
    res = CliRunner().invoke(app, ["train", str(tiny_scenario_file), "--set", "task.nope=1"])
    assert res.exit_code == 2 and "task.nope: unknown field" in res.output


@pytest.mark.slow
def test_train_exports_its_model_and_logs_rounds(tiny_scenario_file: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app,
        ["train", str(tiny_scenario_file), "--runs-dir", str(tmp_path), "--run-id", "t",
         "--mode", "federated", "--rounds", "2"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    run = tmp_path / "t"
    meta = json.loads((run / "model.json").read_text())
    assert (run / "model.onnx").stat().st_size == meta["bytes"] > 0
    results = json.loads((run / "results.json").read_text())
    assert results["stages"] == ["data", "edge_train", "export"]
    assert results["model"]["trained_by"] == "federated"
    log = (run / "run.log").read_text()
    assert "round 1/2 accuracy" in log and "round 2/2" in log and "ETA" in log
    assert "stage export done" in log
    # the per-round lines reach the (non-terminal) output as plain lines
    assert "round 2/2 accuracy" in res.output and "\x1b[" not in res.output


def test_results_written_after_each_stage_and_report_rerendered(
    tiny_scenario_file: Path, tmp_path: Path
) -> None:
    """A stage that crashes after `data` leaves results.json with the data section."""
    from edgeintel.pipeline import STAGES, RunContext, Stage, register_stage, run_pipeline
    from edgeintel.scenario import load_scenario

    seen: dict[str, Any] = {}

    class _Probe(Stage):
        name = "zz_probe"
        order = 11

        def run(self, ctx: RunContext) -> None:
            # results.json already holds the finished data stage
            seen.update(json.loads((ctx.run_dir / "results.json").read_text()))
            raise RuntimeError("crash after data")

    register_stage(_Probe)
    try:
        with pytest.raises(RuntimeError, match="crash after data"):
            run_pipeline(
                load_scenario(tiny_scenario_file), tmp_path, "c", stages=["data", "zz_probe"]
            )
    finally:
        STAGES._items.pop("zz_probe")
    assert seen["stages"] == ["data"] and "data" in seen and seen["status"] == "running"
    run = tmp_path / "c"
    final = json.loads((run / "results.json").read_text())
    assert final["status"] == "failed" and "crash after data" in final["error"]
    assert "stage zz_probe FAILED" in (run / "run.log").read_text()
    # re-render the report from results.json + figures/
    (run / "report.html").unlink()
    res = CliRunner().invoke(app, ["report", str(run)])
    assert res.exit_code == 0, res.output
    html = (run / "report.html").read_text()
    assert "crash after data" in html and "Per-device data distribution" in html
    res = CliRunner().invoke(app, ["report", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "nope: not found; expected a run folder" in res.output


def test_run_pipeline_is_quiet_by_default(
    tiny_scenario_file: Path, tmp_path: Path, capsys: Any
) -> None:
    from edgeintel.pipeline import run_pipeline
    from edgeintel.scenario import load_scenario

    run_pipeline(load_scenario(tiny_scenario_file), tmp_path, "q", stages=["data"])
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    assert "stage data done" in (tmp_path / "q" / "run.log").read_text()


def test_shipped_scenarios_still_validate_with_set() -> None:
    for path in SCENARIOS.glob("*.yaml"):
        raw = yaml.safe_load(path.read_text())
        sc = load_scenario_with(path, ["seed=5"])
        assert sc.seed == 5 and sc.name == raw["name"]


def test_compress_from_run_errors(tmp_path: Path, tiny_scenario_file: Path) -> None:
    res = CliRunner().invoke(app, ["compress"])
    assert res.exit_code == 2 and "--from-run RUN_DIR" in res.output
    res = CliRunner().invoke(app, ["compress", str(tiny_scenario_file), "--from-run", "x"])
    assert res.exit_code == 2
    res = CliRunner().invoke(app, ["compress", "--from-run", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "missing: not found; expected a run folder" in res.output
    res = CliRunner().invoke(app, ["compress", "--from-run", str(tmp_path)])
    assert res.exit_code == 2 and "no scenario.json" in res.output


@pytest.mark.slow
def test_compress_from_run_reuses_model_and_split(tiny_scenario_file: Path, tmp_path: Path) -> None:
    import numpy as np

    res = CliRunner().invoke(
        app, ["train", str(tiny_scenario_file), "--runs-dir", str(tmp_path), "--run-id", "r",
              "--mode", "central", "-q"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    run = tmp_path / "r"
    with np.load(run / "split.npz") as z:
        n_test = len(z["test_idx"])
    out = tmp_path / "c"
    res = CliRunner().invoke(
        app, ["compress", "--from-run", str(run), "--out", str(out), "--runs", "5"]
    )
    assert res.exit_code == 0, res.output
    search = json.loads((out / "search.json").read_text())
    assert search["target"] == str(run / "model.onnx")
    fp32 = next(c for c in search["candidates"] if not c["recipe"]["steps"])
    results = json.loads((run / "results.json").read_text())
    # the fp32 candidate is the run's own model on the run's own held-out split (the test
    # split recorded in model.json; selection accuracy is on the validation split)
    assert fp32["test_accuracy"] == pytest.approx(results["training"]["final_accuracy"], abs=1e-9)
    assert (out / "phone.onnx").is_file()
    html = (out / "report.html").read_text()
    assert 'data-section="compression"' in html and f"{n_test} held out" in html


def test_generated_run_ids_are_unique(tiny_scenario_file: Path, tmp_path: Path) -> None:
    from edgeintel.pipeline import run_pipeline
    from edgeintel.scenario import load_scenario

    sc = load_scenario(tiny_scenario_file)
    dirs = {run_pipeline(sc, tmp_path, stages=[]).run_dir for _ in range(3)}
    assert len(dirs) == 3 and all(d.parent == tmp_path for d in dirs)
