"""Training: local (central baseline and solo device) training; differential privacy,
secure aggregation and checkpoints for federated training (``edgeintel.training.flower``
holds the Flower adapter and is imported on its own)."""

from edgeintel.training.checkpoint import (
    Checkpoint,
    CheckpointStore,
    load_checkpoint,
    save_checkpoint,
    scenario_hash,
)
from edgeintel.training.dp import (
    DifferentialPrivacy,
    DPConfig,
    PrivacyAccountant,
    epsilon_for,
    noise_multiplier_for_epsilon,
)
from edgeintel.training.local import (
    EpochRecord,
    TrainConfig,
    evaluate_accuracy,
    predict_logits,
    train_model,
)
from edgeintel.training.private import PrivacyStrategy, resume_engine
from edgeintel.training.secagg import SecAggConfig, secure_aggregate, secure_sum

__all__ = [
    "Checkpoint",
    "CheckpointStore",
    "DPConfig",
    "DifferentialPrivacy",
    "EpochRecord",
    "PrivacyAccountant",
    "PrivacyStrategy",
    "SecAggConfig",
    "TrainConfig",
    "epsilon_for",
    "evaluate_accuracy",
    "load_checkpoint",
    "noise_multiplier_for_epsilon",
    "predict_logits",
    "resume_engine",
    "save_checkpoint",
    "scenario_hash",
    "secure_aggregate",
    "secure_sum",
    "train_model",
]
