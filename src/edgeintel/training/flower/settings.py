"""Run settings shared by edgeintel's Flower ServerApp and ClientApp.

Flower passes a flat run config (``[tool.flwr.app.config]`` in the app's
pyproject.toml, overridable with ``flwr run --run-config``) to both apps;
:class:`FlowerSettings` validates it once so both sides agree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from edgeintel.errors import ConfigError
from edgeintel.training.dp import ClipMode, DPConfig

__all__ = ["FlowerSettings", "write_flower_app"]


@dataclass(frozen=True)
class FlowerSettings:
    """What to train and how to aggregate (keys use dashes in the Flower run config).

    ``dp_noise_multiplier`` = 0 turns DP off. ``record_dir`` (optional): the ServerApp
    writes each round's decoded updates, weights and new global weights there as
    ``round-N.npz`` plus ``summary.json`` (for checking against the embedded engine).
    """

    num_server_rounds: int = 3
    fraction_train: float = 1.0
    fraction_evaluate: float = 1.0
    min_nodes: int = 2
    dataset: str = "digits"
    model: str = "mlp"
    width: int = 32
    seed: int = 0
    test_fraction: float = 0.25
    partition: str = "iid"
    alpha: float = 0.5
    local_epochs: int = 1
    batch_size: int = 32
    lr: float = 3e-3
    aggregation: str = "fedavg"
    byzantine_f: int = 0
    server_lr: float = 1.0
    compressor: str = "none"
    compressor_ratio: float = 0.01
    dp_noise_multiplier: float = 0.0
    dp_clip_norm: float = 1.0
    dp_clipping: str = "fixed"
    dp_target_epsilon: float = 0.0
    dp_delta: float = 1e-5
    record_dir: str = ""

    def __post_init__(self) -> None:
        if self.num_server_rounds < 1:
            raise ConfigError(f"num-server-rounds must be >= 1, got {self.num_server_rounds}")
        if not 0 < self.fraction_train <= 1:
            raise ConfigError(f"fraction-train must be in (0, 1], got {self.fraction_train}")
        if not 0 <= self.fraction_evaluate <= 1:
            raise ConfigError(f"fraction-evaluate must be in [0, 1], got {self.fraction_evaluate}")
        if self.min_nodes < 1:
            raise ConfigError(f"min-nodes must be >= 1, got {self.min_nodes}")
        if self.local_epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ConfigError("local-epochs and batch-size must be >= 1 and lr > 0")
        if not self.server_lr > 0:
            raise ConfigError(f"server-lr must be > 0, got {self.server_lr}")
        if self.dp_noise_multiplier < 0:
            raise ConfigError(
                f"dp-noise-multiplier must be > 0 (or 0 for no DP), got {self.dp_noise_multiplier}"
            )
        self.dp_config()  # validates the DP fields when DP is on

    def dp_config(self) -> DPConfig | None:
        if self.dp_noise_multiplier == 0:
            return None
        return DPConfig(
            noise_multiplier=self.dp_noise_multiplier,
            clip_norm=self.dp_clip_norm,
            clipping=cast(ClipMode, self.dp_clipping),  # DPConfig validates the name
            target_epsilon=self.dp_target_epsilon or None,
            target_delta=self.dp_delta,
        )

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> FlowerSettings:
        """Build from a Flower run config (dashed keys); unknown keys are an error."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in run_config.items():
            name = key.replace("-", "_")
            if name not in fields:
                known = ", ".join(k.replace("_", "-") for k in fields)
                raise ConfigError(
                    f"unknown Flower run config key {key!r}; expected one of: {known}"
                )
            kind: type = type(fields[name].default)
            try:
                kwargs[name] = kind(value)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"Flower run config {key!r} must be a {kind.__name__}, got {value!r}"
                ) from None
        return cls(**kwargs)

    def to_run_config(self) -> dict[str, Any]:
        return {k.replace("_", "-"): v for k, v in dataclasses.asdict(self).items()}


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_flower_app(directory: str | Path, settings: FlowerSettings | None = None) -> Path:
    """Write a Flower app folder (pyproject.toml) that runs edgeintel's ServerApp/ClientApp.

    The components live in the installed ``edgeintel`` package, so every machine
    (SuperLink and SuperNodes) needs ``pip install edgeintel[federated]``.
    """
    settings = settings or FlowerSettings()
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        "[build-system]",
        'requires = ["hatchling"]',
        'build-backend = "hatchling.build"',
        "",
        "[project]",
        'name = "edgeintel-flower"',
        'version = "1.0.0"',
        'description = "edgeintel federated training on Flower"',
        'license = "Apache-2.0"',
        'dependencies = ["flwr>=1.42", "edgeintel"]',
        "",
        "[tool.hatch.build.targets.wheel]",
        'packages = ["."]',
        "",
        "[tool.flwr.app]",
        'publisher = "edgeintel"',
        "",
        "[tool.flwr.app.components]",
        'serverapp = "edgeintel.training.flower.server_app:app"',
        'clientapp = "edgeintel.training.flower.client_app:app"',
        "",
        "[tool.flwr.app.config]",
    ]
    lines += [f"{k} = {_toml_value(v)}" for k, v in settings.to_run_config().items()]
    (out / "pyproject.toml").write_text("\n".join(lines) + "\n")
    return out
