"""Flower adapter pieces that need no running federation: settings, app folder, aggregation."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest
from flwr.common.config import validate_config

from edgeintel.errors import ConfigError
from edgeintel.training.dp import DifferentialPrivacy, DPConfig
from edgeintel.training.flower import FlowerSettings, write_flower_app
from edgeintel.training.flower.__main__ import main as write_main
from edgeintel.training.flower.strategy import combine_updates


def test_run_config_round_trip_and_errors() -> None:
    s = FlowerSettings(num_server_rounds=5, dataset="mnist", dp_noise_multiplier=1.0)
    again = FlowerSettings.from_run_config(s.to_run_config())
    assert again == s
    assert FlowerSettings.from_run_config({"num-server-rounds": "7"}).num_server_rounds == 7
    with pytest.raises(ConfigError, match="unknown Flower run config key 'rounds'"):
        FlowerSettings.from_run_config({"rounds": 3})
    with pytest.raises(ConfigError, match="must be a int"):
        FlowerSettings.from_run_config({"num-server-rounds": "many"})
    with pytest.raises(ConfigError, match="dp-noise-multiplier"):
        FlowerSettings(dp_noise_multiplier=-1.0)
    with pytest.raises(ConfigError, match="clip_norm"):
        FlowerSettings(dp_noise_multiplier=1.0, dp_clip_norm=0.0)


def test_written_app_is_a_valid_flower_app(tmp_path: Path) -> None:
    app = write_flower_app(tmp_path / "app", FlowerSettings(num_server_rounds=4))
    config = tomllib.loads((app / "pyproject.toml").read_text())
    ok, errors, _ = validate_config(config, check_module=True, project_dir=app)
    assert ok, errors
    assert config["tool"]["flwr"]["app"]["config"]["num-server-rounds"] == 4
    assert write_main([str(tmp_path / "b"), "dataset=mnist", "lr=0.01"]) == 0
    cfg_b = tomllib.loads((tmp_path / "b" / "pyproject.toml").read_text())
    assert cfg_b["tool"]["flwr"]["app"]["config"]["dataset"] == "mnist"
    assert write_main([str(tmp_path / "c"), "bogus=1"]) == 2


def test_combine_updates_rule_and_dp() -> None:
    ups = [np.array([1.0, 2.0], np.float32), np.array([3.0, 6.0], np.float32)]
    delta, rec = combine_updates(ups, [1.0, 3.0], FlowerSettings())
    np.testing.assert_allclose(delta, [2.5, 5.0])
    assert rec is None
    med, _ = combine_updates([*ups, ups[0]], [1, 1, 1], FlowerSettings(aggregation="median"))
    np.testing.assert_allclose(med, [1.0, 2.0])
    dp = DifferentialPrivacy(DPConfig(noise_multiplier=1e-9, clip_norm=1.0), population=10)
    noisy, rec = combine_updates(ups, [1, 1], FlowerSettings(), dp, np.random.default_rng(0))
    # both clipped to norm 1 along the same direction (1, 2)/sqrt(5), equal weights
    np.testing.assert_allclose(noisy, np.array([1.0, 2.0]) / np.sqrt(5), atol=1e-6)
    assert rec is not None and rec.epsilon > 0
