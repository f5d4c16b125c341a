"""`edgeintel train` and the edge_train stage on a tiny scenario; scenario settings; solo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from edgeintel.cli import app
from edgeintel.data import load_dataset
from edgeintel.errors import ConfigError
from edgeintel.models import build_model
from edgeintel.models.train import TrainConfig
from edgeintel.scenario import DeviceProfile, TrainingMode, parse_scenario
from edgeintel.training.scenario_train import federated_config, resolve_mode, topology
from edgeintel.training.solo import freeze_all_but_last, plan_solo, train_solo

from ..conftest import tiny_scenario_dict


def _tiny(**training: Any) -> dict[str, Any]:
    raw = tiny_scenario_dict()
    raw["devices"] = [
        {"name": "phone", "count": 4, "profile": "phone", "attach": "micro-1"},
        {"name": "kiosk", "count": 4, "profile": "phone", "attach": "cloud"},
    ]
    raw["task"] = {"model": "mlp", "width": 4}
    raw["settings"]["training"].update({"rounds": 3, "local_steps": 2, **training})
    return raw


def test_settings_map_onto_the_engine() -> None:
    sc = parse_scenario(_tiny(compressor="topk", aggregation="median", attack="alie",
                              malicious_fraction=0.25, algorithm="fedadam"))  # fmt: skip
    assert resolve_mode(sc) is TrainingMode.HIERARCHICAL
    cfg = federated_config(sc.settings.training, TrainingMode.HIERARCHICAL, sc.seed)
    assert cfg.k2 == 5 and cfg.compressor.name == "topk" and cfg.compressor.uses_feedback
    assert cfg.attack is not None and cfg.attack.fraction == 0.25
    assert cfg.byzantine_fraction == 0.25 and cfg.server.server_lr == 0.01
    clients, paths = topology(sc)
    assert [c.edge for c in clients] == ["micro-1"] * 4 + ["cloud"] * 4
    assert len(paths["micro-1"]) == 1 and paths["micro-1"][0].bandwidth_mbps == 100
    cloud_only = [{"name": "p", "count": 3, "profile": "phone", "attach": "cloud"}]
    flat = parse_scenario({**_tiny(), "edge_servers": [], "links": [], "devices": cloud_only})
    assert resolve_mode(flat) is TrainingMode.FEDERATED


@pytest.mark.parametrize(
    ("training", "msg"),
    [
        ({"attack": "alie"}, "malicious_fraction"),
        ({"aggregation": "norm_clip"}, "clip_norm"),
        ({"local_steps": 2, "local_epochs": 1}, "exactly one"),
        ({"compressor": "zip"}, "compressor"),
        ({"deadline_s": 1, "deadline_quantile": 0.5}, "at most one"),
    ],
)
def test_bad_training_settings(training: dict[str, Any], msg: str) -> None:
    with pytest.raises(ConfigError, match=msg):
        parse_scenario(_tiny(**training))


@pytest.mark.slow
def test_train_cli_hierarchical_with_attack(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(_tiny(attack="sign_flip", malicious_fraction=0.25,
                                      aggregation="trimmed_mean", compressor="int8")))  # fmt: skip
    res = CliRunner().invoke(
        app, ["train", str(f), "--runs-dir", str(tmp_path), "--run-id", "r", "-q"]
    )
    assert res.exit_code == 0, res.output
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert results["stages"] == ["data", "edge_train", "export"]  # train keeps its model
    sec = results["edge_training"]
    assert sec["mode"] == "hierarchical" and len(sec["history"]) == 3
    assert sec["malicious_devices"] == 2  # round(0.25 * 8)
    assert sec["bytes_total"]["edge_to_cloud"] == 3 * 4 * sec["params"]  # one edge, one hop
    assert sec["clean_reference"]["final_accuracy"] is not None
    html = (tmp_path / "r" / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3
    bad = CliRunner().invoke(app, ["train", str(f), "--mode", "nope"])
    assert bad.exit_code == 2 and "--mode" in bad.output


@pytest.mark.slow
def test_train_cli_solo_finetunes_the_last_layer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Solo fine-tuning starts from a model trained on the server-held set only: no central
    fit sees a device's sample (the central baseline saw them all and is not used)."""
    import edgeintel.pipeline.stages.edge_train_stage as et

    fitted: list[np.ndarray] = []
    real = et.train_model

    def spy(model: Any, x: np.ndarray, *a: Any, **kw: Any) -> Any:
        fitted.append(x)
        return real(model, x, *a, **kw)

    monkeypatch.setattr(et, "train_model", spy)
    raw = _tiny(mode="solo", finetune_layers=1, epochs=1)
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(raw))
    res = CliRunner().invoke(app, ["validate", str(f)])
    assert res.exit_code == 2 and "data.server_fraction > 0" in res.output
    raw["data"]["server_fraction"] = 0.2
    f.write_text(yaml.safe_dump(raw))
    res = CliRunner().invoke(
        app, ["train", str(f), "--runs-dir", str(tmp_path), "--run-id", "s", "-q"]
    )
    assert res.exit_code == 0, res.output
    results = json.loads((tmp_path / "s" / "results.json").read_text())
    assert results["stages"] == ["data", "edge_train"]  # solo: no global model, no central fit
    base = results["edge_training"]["base_model"]
    assert base["trained_on"] == "server-held set"
    assert len(fitted) == 1 and len(fitted[0]) == base["samples"]
    split = results["data"]["split"]
    assert base["samples"] == split["server"]
    dev = results["edge_training"]["devices"]["phone-0"]
    assert dev["plan"]["trainable_params"] == 16 * 10 + 10  # last Linear: 4*width -> 10
    assert dev["plan"]["est_time_s"] > 0 and dev["plan"]["est_energy_j"] > 0


def test_solo_plan_fits_memory_and_freezes_layers() -> None:
    ds = load_dataset("digits")
    x, y = ds.x[:200], ds.y[:200]
    model = build_model("image_cnn", ds.sample_shape, 10, width=4)
    big = DeviceProfile(compute_speed=0.5, memory_mb=512, power_compute_w=2.0, power_tx_w=1.0,
                        power_idle_w=0.1, battery_j=1e4)  # fmt: skip
    plan = plan_solo(model, x, y, big, batch_size=64, epochs=2)
    assert plan.batch_size == 64 and plan.epochs == 2
    assert plan.est_energy_j == pytest.approx(2.0 * plan.est_time_s, rel=1e-9)
    tiny = big.model_copy(update={"memory_mb": 0.2})
    small = plan_solo(model, x, y, tiny, batch_size=64, epochs=2)
    assert small.batch_size < 64 and small.memory_mb <= 0.1
    with pytest.raises(ConfigError, match="memory_mb"):
        plan_solo(model, x, y, big.model_copy(update={"memory_mb": 0.001}), 64, 2)
    before = [p.detach().clone() for p in model.parameters()]
    res = train_solo(model, x, y, big, TrainConfig(epochs=1, batch_size=32), finetune_layers=1)
    after = list(model.parameters())
    changed = [
        not np.array_equal(a.detach().numpy(), b.numpy())
        for a, b in zip(after, before, strict=False)
    ]
    assert changed == [False] * (len(before) - 2) + [True, True]  # only the head's weight and bias
    assert res.plan.trainable_params == 16 * 10 + 10
    with pytest.raises(ConfigError, match="finetune_layers"):
        freeze_all_but_last(model, 99)
