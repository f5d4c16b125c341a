"""Scenario settings for DP, secure aggregation and checkpoints drive the engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from edgeintel.data import load_data, partition, train_test_split
from edgeintel.errors import ConfigError, DataError
from edgeintel.models import build_model
from edgeintel.pipeline import RunContext
from edgeintel.pipeline.stages.privacy_report import report_privacy
from edgeintel.scenario import Scenario, parse_scenario
from edgeintel.training.engine import FederatedEngine
from edgeintel.training.private import PrivacyStrategy, build_private_engine
from tests.conftest import tiny_scenario_dict


def _scenario(training: dict[str, Any]) -> Scenario:
    raw = tiny_scenario_dict()
    raw["devices"] = [{"name": "phone", "count": 6, "profile": "phone", "attach": "micro-1"}]
    raw["settings"]["training"] = {"rounds": 2, "k2": 2, "local_steps": 3, **training}
    return parse_scenario(raw)


def _engine(sc: Scenario) -> FederatedEngine:
    ds = load_data(sc.data, seed=sc.seed)
    tr, te = train_test_split(ds.y, sc.data.test_fraction, seed=sc.seed)
    local = partition(ds.y[tr], sc.num_devices, "iid", seed=sc.seed)
    model = build_model(sc.task.model, ds.x.shape[1:], ds.num_classes, sc.task.width, sc.seed)
    return build_private_engine(sc, model, ds, tr, te, [tr[p] for p in local])


def test_scenario_dp_secagg_checkpoint_and_resume(tmp_path: Path) -> None:
    training = {
        "dp": {"noise_multiplier": 0.8, "clip_norm": 0.5},
        "secure_aggregation": {"dropout": 0.2},
        "checkpoint_dir": str(tmp_path / "ck"),
    }
    sc = _scenario(training)
    eng = _engine(sc)
    eng.run()
    ctx = RunContext(scenario=sc, run_dir=tmp_path, console=Console(quiet=True))
    report_privacy(ctx, eng)
    privacy = ctx.results["training"]["privacy"]
    assert [p["round"] for p in privacy["dp"]["epsilon_vs_round"]] == [1, 2]
    assert privacy["secure_aggregation"]["recovered_dropouts"] >= 2
    assert privacy["secure_aggregation"]["protocol_bytes_up"] > 0
    assert [f.title for f in ctx.figures] == ["Privacy budget: epsilon vs round"]
    strat = eng.strategy
    assert isinstance(strat, PrivacyStrategy) and strat.dp is not None and strat.secagg
    assert [e["round"] for e in strat.epsilon_history] == [1, 2]
    assert len(strat.dp.accountant.history) == 4  # hierarchical: k2 = 2 edge rounds per round
    assert all(h["dropped"] >= 1 for h in strat.secagg_history)
    assert (tmp_path / "ck" / "round-000002.ckpt").exists()
    # Raising rounds resumes from round 2 instead of starting over.
    more = _engine(_scenario({**training, "rounds": 3}))
    assert more.state.round == 2
    np.testing.assert_array_equal(more.state.weights, eng.state.weights)
    more.run()
    assert more.state.round == 3
    assert len(more.strategy.epsilon_history) == 3  # type: ignore[attr-defined]
    # Other settings (a different noise multiplier) do not match the checkpoint.
    with pytest.raises(DataError, match="another scenario"):
        _engine(_scenario({**training, "dp": {"noise_multiplier": 1.0, "clip_norm": 0.5}}))


@pytest.mark.parametrize(
    ("training", "match"),
    [
        ({"dp": {"noise_multiplier": 0}}, "settings.training.dp.noise_multiplier"),
        ({"dp": {"clip_norm": -1}}, "settings.training.dp.clip_norm"),
        ({"dp": {"clipping": "median"}}, "settings.training.dp.clipping"),
        ({"secure_aggregation": {}, "aggregation": "median"}, "use aggregation 'fedavg'"),
        ({"secure_aggregation": {}, "compressor": "topk"}, "compressor 'none'"),
        ({"secure_aggregation": {"threshold": 1.5}}, "secure_aggregation.threshold"),
    ],
)
def test_bad_privacy_settings(training: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        _scenario(training)


def test_target_epsilon_already_exceeded_in_scenario() -> None:
    sc = _scenario({"dp": {"noise_multiplier": 0.3, "target_epsilon": 0.5}})
    with pytest.raises(ConfigError, match=r"target_epsilon=0\.5 is already exceeded"):
        _engine(sc)


def test_edgeintel_train_cli_uses_dp_and_secure_aggregation(tmp_path: Path) -> None:
    import json

    import yaml
    from typer.testing import CliRunner

    from edgeintel.cli import app

    raw = tiny_scenario_dict()
    raw["devices"] = [{"name": "phone", "count": 6, "profile": "phone", "attach": "micro-1"}]
    raw["settings"]["training"] = {
        "mode": "hierarchical",
        "rounds": 2,
        "k2": 1,
        "local_steps": 3,
        "dp": {"noise_multiplier": 0.8, "clip_norm": 0.5},
        "secure_aggregation": {},
        "checkpoint_dir": str(tmp_path / "ck"),
    }
    scenario = tmp_path / "dp.yaml"
    scenario.write_text(yaml.safe_dump(raw))
    runs = tmp_path / "runs"
    args = ["train", str(scenario), "--runs-dir", str(runs), "--run-id", "dp", "-q"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    results = json.loads((runs / "dp" / "results.json").read_text())
    privacy = results["edge_training"]["privacy"]
    assert [p["round"] for p in privacy["dp"]["epsilon_vs_round"]] == [1, 2]
    assert privacy["dp"]["epsilon"] > 0 and privacy["secure_aggregation"]["protocol_bytes_up"] > 0
    assert "Privacy budget: epsilon vs round" in (runs / "dp" / "report.html").read_text()
    assert (tmp_path / "ck" / "round-000002.ckpt").exists()
    # A corrupt checkpoint is one clear line and exit code 2, never a silent restart.
    (tmp_path / "ck" / "round-000002.ckpt").write_bytes(b"junk")
    res = CliRunner().invoke(app, [*args[:4], "--run-id", "dp2", "-q"])
    assert res.exit_code == 2
    assert "not an edgeintel checkpoint" in res.output


@pytest.mark.parametrize(
    ("dp", "source"),
    [
        ({"noise_multiplier": 1.0}, "OS entropy (secret sample)"),
        ({"noise_multiplier": 1.0, "reproducible_noise": True}, "seeded (reproducible"),
    ],
)
def test_results_say_where_the_device_sample_came_from(dp: dict[str, Any], source: str) -> None:
    from edgeintel.training.private import privacy_summary

    eng = _engine(_scenario({"dp": dp, "clients_per_round": 3}))
    assert eng.config.secret_sampling is (source.startswith("OS"))
    summary = privacy_summary(eng)
    assert summary is not None and summary["dp"]["sampling_source"].startswith(source)


def test_relative_checkpoint_dir_resolves_against_the_scenario_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    from edgeintel.scenario import load_scenario

    sub = tmp_path / "downloads"
    sub.mkdir()
    raw = tiny_scenario_dict()
    raw["settings"]["training"]["checkpoint_dir"] = "ck/run1"
    f = sub / "s.yaml"
    f.write_text(yaml.safe_dump(raw))
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # not where the scenario is
    sc = load_scenario(f)
    assert sc.settings.training.checkpoint_dir == (sub / "ck" / "run1").resolve()
    # a symbolic link inside the folder that points outside is refused too
    (sub / "link").symlink_to(tmp_path / "cwd")
    raw["settings"]["training"]["checkpoint_dir"] = "link/ck"
    f.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="outside the scenario's folder"):
        load_scenario(f)


def test_engine_fails_a_run_whose_weights_explode() -> None:
    """Finite but huge weights (e.g. a huge server step) fail the run, never 'completed'."""
    from edgeintel.errors import TrainingError

    eng = _engine(_scenario({}))
    w = eng.state.weights.copy()
    w[0] = 1e9
    eng.state.weights = w
    with pytest.raises(TrainingError, match="diverged in round 1: a global weight reached"):
        eng.run_round()
