"""Training across the edge: solo (one device) and federated (flat and hierarchical).

Maths as pure functions over lists of numpy arrays (``aggregate``,
``compressors``, ``attacks``, ``server_opt``); the in-process engine
(``engine.FederatedEngine``) orchestrates rounds from ``rounds`` (config and
state), ``strategy`` (the seam) and ``client_train`` (vmap local training), with
time and bytes from ``edgeintel.network``; ``settings`` is the scenario's
``settings.training``; ``scenario_train`` maps a scenario onto the engine;
``solo`` trains one device within its budget. The plain trainer
(``train_model``) lives in ``edgeintel.models``.
``dp``, ``secagg``, ``checkpoint`` and ``private`` add differential privacy,
secure aggregation and checkpoint/resume through the engine's Strategy seam;
``edgeintel.training.flower`` (imported on its own) is the Flower adapter.

A lazy face (``edgeintel.lazy``): each name loads its module on first use, so the
scenario's ``training/settings.py`` does not bring torch, dp-accounting or cryptography.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeintel.lazy import lazy_face

if TYPE_CHECKING:
    from edgeintel.network import TIERS, Hop
    from edgeintel.training.aggregate import (
        AGGREGATORS,
        AggregationConfig,
        AggregationRule,
        aggregate,
        clip_by_norm,
        coordinate_median,
        filter_finite,
        krum,
        multi_krum,
        trimmed_mean,
        weighted_mean,
    )
    from edgeintel.training.attacks import (
        ATTACKS,
        Attack,
        AttackConfig,
        AttackKind,
        alie_z,
        make_attack,
    )
    from edgeintel.training.checkpoint import (
        Checkpoint,
        CheckpointStore,
        load_checkpoint,
        save_checkpoint,
        scenario_hash,
    )
    from edgeintel.training.client_train import LocalTrainer
    from edgeintel.training.compressors import (
        UPDATE_COMPRESSORS,
        Compressor,
        CompressorConfig,
        CompressorKind,
        compress_with_feedback,
        make_compressor,
    )
    from edgeintel.training.dp import (
        DifferentialPrivacy,
        DPConfig,
        PrivacyAccountant,
        epsilon_for,
        noise_multiplier_for_epsilon,
    )
    from edgeintel.training.engine import FederatedEngine
    from edgeintel.training.private import PrivacyStrategy, resume_engine
    from edgeintel.training.rounds import (
        ClientSpec,
        EngineState,
        FederatedConfig,
        FlMode,
        RoundRecord,
        Tier,
    )
    from edgeintel.training.scenario_train import (
        build_engine,
        federated_config,
        resolve_mode,
        topology,
    )
    from edgeintel.training.secagg import SecAggConfig, secure_aggregate, secure_sum
    from edgeintel.training.server_opt import (
        SERVER_OPTIMIZERS,
        Algorithm,
        ServerOptConfig,
        server_step,
    )
    from edgeintel.training.settings import (
        DPSettings,
        SecureAggregationSettings,
        TrainingMode,
        TrainingSettings,
    )
    from edgeintel.training.solo import (
        SoloPlan,
        SoloResult,
        freeze_all_but_last,
        plan_solo,
        train_solo,
    )
    from edgeintel.training.strategy import AggregationContext, Strategy
    from edgeintel.training.weights import (
        flatten,
        get_weights,
        set_weights,
        unflatten,
        weight_names,
    )

__all__ = [
    "AGGREGATORS",
    "ATTACKS",
    "SERVER_OPTIMIZERS",
    "TIERS",
    "UPDATE_COMPRESSORS",
    "AggregationConfig",
    "AggregationContext",
    "AggregationRule",
    "Algorithm",
    "Attack",
    "AttackConfig",
    "AttackKind",
    "Checkpoint",
    "CheckpointStore",
    "ClientSpec",
    "Compressor",
    "CompressorConfig",
    "CompressorKind",
    "DPConfig",
    "DPSettings",
    "DifferentialPrivacy",
    "EngineState",
    "FederatedConfig",
    "FederatedEngine",
    "FlMode",
    "Hop",
    "LocalTrainer",
    "PrivacyAccountant",
    "PrivacyStrategy",
    "RoundRecord",
    "SecAggConfig",
    "SecureAggregationSettings",
    "ServerOptConfig",
    "SoloPlan",
    "SoloResult",
    "Strategy",
    "Tier",
    "TrainingMode",
    "TrainingSettings",
    "aggregate",
    "alie_z",
    "build_engine",
    "clip_by_norm",
    "compress_with_feedback",
    "coordinate_median",
    "epsilon_for",
    "federated_config",
    "filter_finite",
    "flatten",
    "freeze_all_but_last",
    "get_weights",
    "krum",
    "load_checkpoint",
    "make_attack",
    "make_compressor",
    "multi_krum",
    "noise_multiplier_for_epsilon",
    "plan_solo",
    "resolve_mode",
    "resume_engine",
    "save_checkpoint",
    "scenario_hash",
    "secure_aggregate",
    "secure_sum",
    "server_step",
    "set_weights",
    "topology",
    "train_solo",
    "trimmed_mean",
    "unflatten",
    "weight_names",
    "weighted_mean",
]

__getattr__, __dir__ = lazy_face(__name__, __file__)
