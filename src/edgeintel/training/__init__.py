"""Training: local (central, solo) and federated (flat and hierarchical) across the edge.

Maths as pure functions over lists of numpy arrays (``aggregate``,
``compressors``, ``attacks``, ``server_opt``); the in-process engine
(``engine.FederatedEngine``) orchestrates rounds; ``scenario_train`` maps a
scenario onto the engine; ``solo`` trains one device within its budget.
"""

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
from edgeintel.training.compressors import (
    COMPRESSORS,
    Compressor,
    CompressorConfig,
    CompressorKind,
    compress_with_feedback,
    make_compressor,
)
from edgeintel.training.engine import (
    TIERS,
    AggregationContext,
    ClientSpec,
    EngineState,
    FederatedConfig,
    FederatedEngine,
    FlMode,
    Hop,
    RoundRecord,
    Strategy,
    Tier,
)
from edgeintel.training.local import (
    EpochRecord,
    TrainConfig,
    evaluate_accuracy,
    predict_logits,
    train_model,
)
from edgeintel.training.scenario_train import build_engine, federated_config, resolve_mode, topology
from edgeintel.training.server_opt import Algorithm, ServerOptConfig, server_step
from edgeintel.training.solo import SoloPlan, SoloResult, freeze_all_but_last, plan_solo, train_solo
from edgeintel.training.weights import flatten, get_weights, set_weights, unflatten, weight_names

__all__ = [
    "AGGREGATORS",
    "ATTACKS",
    "COMPRESSORS",
    "TIERS",
    "AggregationConfig",
    "AggregationContext",
    "AggregationRule",
    "Algorithm",
    "Attack",
    "AttackConfig",
    "AttackKind",
    "ClientSpec",
    "Compressor",
    "CompressorConfig",
    "CompressorKind",
    "EngineState",
    "EpochRecord",
    "FederatedConfig",
    "FederatedEngine",
    "FlMode",
    "Hop",
    "RoundRecord",
    "ServerOptConfig",
    "SoloPlan",
    "SoloResult",
    "Strategy",
    "Tier",
    "TrainConfig",
    "aggregate",
    "alie_z",
    "build_engine",
    "clip_by_norm",
    "compress_with_feedback",
    "coordinate_median",
    "evaluate_accuracy",
    "federated_config",
    "filter_finite",
    "flatten",
    "freeze_all_but_last",
    "get_weights",
    "krum",
    "make_attack",
    "make_compressor",
    "multi_krum",
    "plan_solo",
    "predict_logits",
    "resolve_mode",
    "server_step",
    "set_weights",
    "topology",
    "train_model",
    "train_solo",
    "trimmed_mean",
    "unflatten",
    "weight_names",
    "weighted_mean",
]
