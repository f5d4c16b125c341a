"""Edge training driven by a scenario: topology -> clients, settings -> engine config."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from torch import nn

from edgeintel.data.datasets import Dataset
from edgeintel.errors import ConfigError
from edgeintel.network import Hop
from edgeintel.threads import DEFAULT_THREADS, scenario_threads
from edgeintel.training.aggregate import AggregationConfig
from edgeintel.training.attacks import AttackConfig
from edgeintel.training.compressors import CompressorConfig
from edgeintel.training.engine import FederatedEngine
from edgeintel.training.rounds import ClientSpec, FederatedConfig, FlMode
from edgeintel.training.server_opt import Algorithm, ServerOptConfig
from edgeintel.training.settings import TrainingMode, TrainingSettings
from edgeintel.training.strategy import Strategy

if TYPE_CHECKING:  # the scenario composes the training settings, so it imports this package
    from edgeintel.scenario import Scenario
    from edgeintel.topology import Device

__all__ = ["build_engine", "federated_config", "resolve_mode", "topology"]


def resolve_mode(scenario: Scenario) -> TrainingMode:
    """``auto`` -> hierarchical when some device attaches to an edge server, else federated."""
    mode = scenario.settings.training.mode
    if mode is not TrainingMode.AUTO:
        return mode
    edges = {e.name for e in scenario.edge_servers}
    if any(g.attach in edges for g in scenario.devices):
        return TrainingMode.HIERARCHICAL
    return TrainingMode.FEDERATED


def federated_config(
    settings: TrainingSettings,
    mode: TrainingMode,
    seed: int,
    step_ms: float | None = None,
    threads: int | None = DEFAULT_THREADS,
) -> FederatedConfig:
    """Map the scenario's training settings onto the engine's validated config."""
    if mode not in (TrainingMode.FEDERATED, TrainingMode.HIERARCHICAL):
        raise ConfigError(f"settings.training.mode {mode!s} is not a federated mode")
    algo = str(settings.algorithm)
    server_lr = settings.server_lr or (0.01 if algo == Algorithm.FEDADAM else 1.0)
    attack = None
    if settings.attack is not None:
        attack = AttackConfig(name=str(settings.attack), fraction=settings.malicious_fraction)
    byz = settings.byzantine_fraction
    if byz is None and settings.attack is not None:
        byz = min(settings.malicious_fraction, 0.49)
    return FederatedConfig(
        mode=FlMode(str(mode)),
        rounds=settings.rounds,
        clients_per_round=settings.clients_per_round,
        local_steps=settings.local_steps,
        local_epochs=settings.local_epochs,
        batch_size=settings.batch_size,
        lr=settings.client_lr,
        weight_decay=settings.weight_decay,
        mu=settings.mu if algo == Algorithm.FEDPROX else 0.0,
        server=ServerOptConfig(algorithm=algo, server_lr=server_lr),
        compressor=CompressorConfig(
            name=str(settings.compressor),
            ratio=settings.topk_ratio,
            error_feedback=settings.error_feedback,
        ),
        aggregation=AggregationConfig(rule=str(settings.aggregation), clip_norm=settings.clip_norm),
        byzantine_fraction=byz if byz is not None else 0.0,
        attack=attack,
        k2=settings.k2 if mode is TrainingMode.HIERARCHICAL else 1,
        deadline_s=settings.deadline_s,
        deadline_quantile=settings.deadline_quantile,
        step_ms=step_ms,
        dropout=settings.dropout,
        seed=seed,
        threads=threads,
        # DP amplification by sampling needs a sample nobody can predict
        secret_sampling=settings.dp is not None and not settings.dp.reproducible_noise,
    )


def topology(
    scenario: Scenario, devices: Sequence[Device] | None = None
) -> tuple[list[ClientSpec], dict[str, list[Hop]]]:
    """Clients (one per expanded device) and each edge server's hops up to the cloud."""
    devices = list(devices) if devices is not None else scenario.expand_devices()
    clients = [
        ClientSpec(
            name=d.name,
            edge=d.attach,
            compute_speed=d.profile.compute_speed,
            bandwidth_mbps=d.link.bandwidth_mbps,
            rtt_ms=d.link.rtt_ms,
            power_compute_w=d.profile.power_compute_w,
            power_tx_w=d.profile.power_tx_w,
        )
        for d in devices
    ]
    graph = scenario.topology
    paths = {
        e.name: [Hop(link.bandwidth_mbps, link.rtt_ms) for link in graph.links_to_cloud(e.name)]
        for e in scenario.edge_servers
    }
    return clients, paths


def build_engine(
    scenario: Scenario,
    model: nn.Module,
    dataset: Dataset,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    device_parts: Sequence[np.ndarray],
    mode: TrainingMode | None = None,
    strategy: Strategy | None = None,
    overrides: dict[str, object] | None = None,
    val_idx: np.ndarray | None = None,
) -> FederatedEngine:
    """An engine over the scenario's devices; ``device_parts`` index ``dataset`` (global ids).

    ``overrides`` replaces training settings (e.g. ``{"attack": None}`` for a clean reference);
    ``val_idx``: the validation split (held off the devices) the exported round is chosen on.
    """
    mode = mode or resolve_mode(scenario)
    settings = scenario.settings.training
    if overrides:
        settings = settings.model_copy(update=overrides)
    cfg = federated_config(settings, mode, scenario.seed, threads=scenario_threads(scenario))
    clients, paths = topology(scenario)
    if len(clients) != len(device_parts):
        raise ConfigError(f"{len(device_parts)} data shards for {len(clients)} devices")
    # shards index the whole dataset; the engine wants indices into its training arrays
    pos = np.full(len(dataset.y), -1, dtype=np.int64)
    pos[train_idx] = np.arange(len(train_idx))
    parts = [pos[np.asarray(p, dtype=np.int64)] for p in device_parts]
    return FederatedEngine(
        model,
        dataset.x[train_idx],
        dataset.y[train_idx],
        parts,
        clients,
        dataset.x[test_idx],
        dataset.y[test_idx],
        cfg,
        num_classes=dataset.num_classes,
        edge_paths=dict(paths),
        strategy=strategy,
        task=scenario.task.task_kind(),
        x_val=None if val_idx is None else dataset.x[val_idx],
        y_val=None if val_idx is None else dataset.y[val_idx],
    )
