"""Training: local (central baseline and solo device) training."""

from edgeintel.training.local import (
    EpochRecord,
    TrainConfig,
    evaluate_accuracy,
    predict_logits,
    train_model,
)

__all__ = ["EpochRecord", "TrainConfig", "evaluate_accuracy", "predict_logits", "train_model"]
