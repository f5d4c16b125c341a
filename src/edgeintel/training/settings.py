"""Settings of the training component: the ``settings.training`` part of a scenario.

Names of aggregation rules, attacks, update compressors and federated algorithms
are checked against their registries (``AGGREGATORS``, ``ATTACKS``,
``UPDATE_COMPRESSORS``, ``SERVER_OPTIMIZERS``) when a scenario is validated, so
a rule a user registers can be named in a scenario file.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, field_validator, model_validator

from edgeintel.errors import FieldError
from edgeintel.schema import Fraction, Strict, registry_name, resolve_folder
from edgeintel.training.aggregate import AGGREGATORS
from edgeintel.training.attacks import ATTACKS
from edgeintel.training.compressors import UPDATE_COMPRESSORS
from edgeintel.training.server_opt import SERVER_OPTIMIZERS

if TYPE_CHECKING:
    from edgeintel.models.train import TrainConfig
    from edgeintel.topology import Topology

__all__ = ["DPSettings", "SecureAggregationSettings", "TrainingMode", "TrainingSettings"]

Norm = Annotated[float, Field(gt=0, le=1e6)]
"""An L2 norm in parameter units: above 0, at most 10**6."""


#: a learning rate or step factor: > 0 and at most 10. Larger values are not a setting
#: anyone means (Adam, SGD and FedAvg's server step live far below); they only make
#: the weights explode while the run still reports "completed".
LearningRate = Annotated[float, Field(gt=0, le=10)]


class TrainingMode(StrEnum):
    """``auto``: hierarchical when devices attach to edge servers, else federated."""

    AUTO = "auto"
    CENTRAL = "central"
    SOLO = "solo"
    FEDERATED = "federated"
    HIERARCHICAL = "hierarchical"


class DPSettings(Strict):
    """Client-level differential privacy (DP-FedAvg), see docs/privacy.md.

    ``noise_multiplier`` z and ``clip_norm`` C (L2, parameter units); ``clipping``
    ``fixed`` or ``adaptive`` (towards the ``target_quantile`` of update norms);
    ``target_epsilon`` at ``target_delta`` bounds training (``on_budget``: stop or warn).
    """

    noise_multiplier: Annotated[float, Field(gt=0, le=1000)] = 1.0
    clip_norm: Norm = 1.0
    clipping: Annotated[str, Field(pattern=r"^(fixed|adaptive)$")] = "fixed"
    target_quantile: Annotated[float, Field(gt=0, lt=1)] = 0.5
    clip_lr: LearningRate = 0.2
    target_epsilon: Annotated[float, Field(gt=0, le=1000)] | None = None
    target_delta: Annotated[float, Field(gt=0, lt=1)] = 1e-5
    on_budget: Annotated[str, Field(pattern=r"^(stop|warn)$")] = "stop"
    #: a reproducible simulation (results say so): draw DP noise and the devices sampled
    #: each round from the scenario seed instead of OS entropy. Not private: anyone with
    #: the scenario can regenerate the noise, and amplification by sampling assumes a
    #: sample nobody can predict.
    reproducible_noise: bool = False


class SecureAggregationSettings(Strict):
    """Pairwise-masking secure aggregation at every device-level aggregator.

    ``scale_bits``: fixed-point resolution 2^-scale_bits; ``threshold``: fraction of a
    device's share holders needed to recover its masks; ``dropout``: share of devices
    simulated to drop out after masking (recovered from secret shares); ``neighbors``:
    SecAgg+ degree (even), each device masks with and shares to only that many peers;
    ``ring_bits``: 32 or 64, bits per masked value (32: as many bytes as float32 updates;
    ``scale_bits`` at most ``ring_bits - 8``).
    """

    scale_bits: Annotated[int, Field(ge=8, le=48)] = 24
    threshold: Annotated[float, Field(gt=0, lt=1)] = 0.5
    dropout: Annotated[float, Field(ge=0, lt=0.5)] = 0.0
    neighbors: Annotated[int, Field(ge=2, le=100_000, multiple_of=2)] | None = None
    ring_bits: Literal[32, 64] = 64

    @model_validator(mode="after")
    def _scale_fits_ring(self) -> SecureAggregationSettings:
        if self.scale_bits > self.ring_bits - 8:
            raise ValueError(
                f"scale_bits {self.scale_bits} leaves no headroom in a {self.ring_bits}-bit "
                f"ring; give scale_bits <= {self.ring_bits - 8}"
            )
        return self


#: ``settings.training.lr_schedule``: the names of ``edgeintel.models.train.LR_SCHEDULES``
LRSchedule = Literal["constant", "cosine", "onecycle"]


class TrainingSettings(Strict):
    """Central baseline (epochs, batch_size, lr, weight_decay: Adam, ``lr_schedule`` over
    its steps: constant, cosine or onecycle, also used by solo training) and edge training.

    Edge training (see docs/training.md): ``mode``; federated rounds of
    ``local_steps`` (k1) or ``local_epochs`` SGD at ``client_lr`` on
    ``clients_per_round`` sampled devices; ``algorithm`` with ``mu`` (FedProx) and
    ``server_lr``; ``k2`` edge aggregations per cloud aggregation (hierarchical);
    an update ``compressor``; a robust ``aggregation`` rule; an ``attack`` run by
    ``malicious_fraction`` of the devices; a round deadline; dropouts; solo
    fine-tuning of the last ``finetune_layers`` layers; ``central_tolerance``: how far
    edge training may fall below the central baseline and still count as paying off
    (results.json ``payoff.training``), in the task kind's headline metric (accuracy or
    AUROC: a fraction; RMSE: target units).
    """

    epochs: Annotated[int, Field(ge=1, le=1000)] = 10
    batch_size: Annotated[int, Field(ge=1, le=65536)] = 32
    lr: LearningRate = 3e-3
    lr_schedule: LRSchedule = "constant"
    weight_decay: Annotated[float, Field(ge=0, le=1)] = 0.0
    # ---- edge training (issue 4)
    mode: TrainingMode = TrainingMode.AUTO
    rounds: Annotated[int, Field(ge=1, le=100_000)] = 10
    clients_per_round: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    local_steps: Annotated[int, Field(ge=1, le=100_000)] | None = 10
    local_epochs: Annotated[int, Field(ge=1, le=1000)] | None = None
    client_lr: LearningRate = 0.05
    algorithm: Annotated[str, registry_name(SERVER_OPTIMIZERS)] = "fedavg"
    mu: Annotated[float, Field(ge=0, le=100)] = 0.01
    server_lr: LearningRate | None = None
    k2: Annotated[int, Field(ge=1, le=1000)] = 5
    compressor: Annotated[str, registry_name(UPDATE_COMPRESSORS)] = "none"
    topk_ratio: Annotated[float, Field(gt=0, le=1)] = 0.01
    error_feedback: bool | None = None
    aggregation: Annotated[str, registry_name(AGGREGATORS)] = "fedavg"
    byzantine_fraction: Annotated[float, Field(ge=0, lt=0.5)] | None = None
    clip_norm: Norm | None = None
    attack: Annotated[str, registry_name(ATTACKS)] | None = None
    malicious_fraction: Fraction = 0.0
    deadline_s: Annotated[float, Field(gt=0, le=1e7)] | None = None
    deadline_quantile: Annotated[float, Field(gt=0, le=1)] | None = None
    dropout: Fraction = 0.0
    finetune_layers: Annotated[int, Field(ge=1, le=10_000)] | None = None
    central_tolerance: Annotated[float, Field(ge=0, le=1e9)] = 0.02
    # ---- privacy and fault tolerance (issue 5)
    dp: DPSettings | None = None
    secure_aggregation: SecureAggregationSettings | None = None
    checkpoint_dir: Path | None = Field(
        default=None, description="save the aggregator state here every round; resume from it"
    )

    # inside the scenario's folder when relative (schema.resolve_folder)
    _checkpoint_dir = field_validator("checkpoint_dir")(resolve_folder)

    @model_validator(mode="after")
    def _edge_training(self) -> TrainingSettings:
        if self.local_epochs is not None and "local_steps" not in self.model_fields_set:
            object.__setattr__(self, "local_steps", None)
        if (self.local_steps is None) == (self.local_epochs is None):
            raise ValueError("give exactly one of 'local_steps' and 'local_epochs'")
        if self.deadline_s is not None and self.deadline_quantile is not None:
            raise ValueError("give at most one of 'deadline_s' and 'deadline_quantile'")
        if self.aggregation == "norm_clip" and self.clip_norm is None:
            raise ValueError("aggregation 'norm_clip' needs 'clip_norm'")
        if self.attack is not None and self.malicious_fraction == 0:
            raise ValueError("an 'attack' needs 'malicious_fraction' > 0")
        if self.secure_aggregation is not None:
            if self.aggregation != "fedavg":
                raise ValueError(
                    "secure_aggregation reveals only the sum; use aggregation 'fedavg'"
                )
            if self.compressor != "none":
                raise ValueError("secure_aggregation needs compressor 'none' (masks are dense)")
            if self.dp is not None and self.dp.clipping == "adaptive":
                raise ValueError("secure_aggregation with dp supports dp.clipping 'fixed' only")
        return self

    def central_config(self, threads: int | None = None) -> TrainConfig:
        """The central baseline's ``TrainConfig`` (epochs, batch size, Adam's rate and
        weight decay, schedule); ``threads`` None keeps the caller's thread limit."""
        from edgeintel.models.train import TrainConfig

        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            threads=threads,
            lr_schedule=self.lr_schedule,
        )

    def check_scenario(self, topology: Topology) -> None:
        """Privacy needs several devices sharing updates: no DP or secure aggregation with
        central or solo training (nothing is aggregated), and SecAgg+ ``neighbors`` below
        the device count."""
        for name, given in (("dp", self.dp), ("secure_aggregation", self.secure_aggregation)):
            if given is not None and self.mode in (TrainingMode.CENTRAL, TrainingMode.SOLO):
                raise FieldError(
                    (name,),
                    f"applies to federated or hierarchical training, not mode '{self.mode}' "
                    "(no device updates are aggregated); remove it or change the mode",
                )
        sa = self.secure_aggregation
        n = topology.num_devices
        if sa is not None and sa.neighbors is not None and sa.neighbors >= n:
            raise FieldError(
                ("secure_aggregation", "neighbors"),
                f"{sa.neighbors} neighbours need more than {sa.neighbors} devices; the "
                f"scenario has {n} (give fewer, or leave it out for all pairs)",
            )
