"""The central baseline's training settings reach every place that trains it."""

from __future__ import annotations

from edgeintel.models.train import TrainConfig
from edgeintel.training.settings import TrainingSettings


def test_central_config_carries_every_central_field() -> None:
    st = TrainingSettings(
        epochs=4, batch_size=16, lr=0.004, weight_decay=1e-4, lr_schedule="cosine"
    )
    assert st.central_config() == TrainConfig(
        epochs=4, batch_size=16, lr=0.004, weight_decay=1e-4, threads=None, lr_schedule="cosine"
    )
    assert st.central_config(threads=1).threads == 1
