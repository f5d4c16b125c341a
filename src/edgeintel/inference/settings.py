"""Settings of the inference component: the ``settings.inference`` part of a scenario."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from edgeintel.errors import FieldError
from edgeintel.inference.runtimes import RUNTIMES
from edgeintel.schema import Strict

if TYPE_CHECKING:
    from edgeintel.topology import Topology

__all__ = ["CompressBudget", "CompressSettings", "InferenceSettings", "check_profile_runtime"]


def check_profile_runtime(name: str) -> str | None:
    """Why ``name`` is not a device runtime (one line), or ``None`` when it is one."""
    if name in RUNTIMES:
        return None
    return f"unknown runtime {name!r}; expected one of: {', '.join(RUNTIMES.names())}"


class CompressBudget(Strict):
    """A device's compression budget (``None`` = not checked); latency on the device in ms.

    ``max_model_kb`` in KiB (at least 1: no ONNX model is smaller), ``max_peak_memory_mb``
    in MiB (defaults to the device profile's ``memory_mb``). Quality: ``min_accuracy`` (a
    classifier's floor) and ``max_metric_drop`` (any task kind: the largest drop of its
    headline metric from the uncompressed model on the validation split, in that metric's
    unit).
    """

    max_latency_ms: Annotated[float, Field(ge=1e-3, le=1e7)] | None = None
    max_model_kb: Annotated[float, Field(ge=1, le=1e9)] | None = None
    max_peak_memory_mb: Annotated[float, Field(ge=1e-3, le=1e9)] | None = None
    min_accuracy: Annotated[float, Field(ge=0, le=1)] | None = None
    max_metric_drop: Annotated[float, Field(ge=0, le=1e9)] | None = Field(
        default=None,
        description="largest drop of the task kind's headline metric (accuracy, rmse, auroc) "
        "from the uncompressed model on the validation split, in that metric's unit "
        "(accuracy: 0.01 = one point; rmse: target units)",
    )


class CompressSettings(Strict):
    """The compression stage: search ``search_space`` and pick one artifact per device profile.

    ``budget`` applies to every profile; ``budgets`` overrides it per profile name.
    ``objective``: among candidates that meet the budget, the best by ``metric`` (the task
    kind's headline: accuracy, rmse, auroc; ``accuracy`` is the classifier's own spelling),
    the fastest (``latency``) or the smallest (``size``).
    """

    enabled: bool = True
    search_space: Literal["quick", "default"] = "quick"
    objective: Literal["metric", "accuracy", "latency", "size"] = "metric"
    latency_stat: Literal["p50", "p95"] = "p50"
    budget: CompressBudget = CompressBudget()
    budgets: dict[str, CompressBudget] = Field(default_factory=dict)
    parity: Literal["profiles", "all", "off"] = Field(
        default="profiles",
        description="the parity matrix of the trained model (results 'runtimes'): on the "
        "runtimes the device profiles name (always with onnxruntime), on every registered "
        "runtime, or off; fp32 and int8 each, on the whole test split",
    )
    finetune_rounds: Annotated[int, Field(ge=0, le=10_000)] = Field(
        default=2,
        description="after edge training: federated rounds over the device shards per "
        "fine-tuning step (QAT, pruning, low-rank, compact); 0 = no federated fine-tuning "
        "(fine-tuning recipes then fit on the server-held set, or are left out)",
    )


class InferenceSettings(Strict):
    """ONNX Runtime measurement settings (latency at batch 1, one intra-op thread)."""

    latency_runs: Annotated[int, Field(ge=5, le=100_000)] = 100
    warmup_runs: Annotated[int, Field(ge=0, le=10_000)] = 10
    compress: CompressSettings = CompressSettings()

    def check_scenario(self, topology: Topology) -> None:
        """Budgets name device profiles of the scenario (paths below ``settings.inference``)."""
        for name in self.compress.budgets:
            if name not in topology.device_profiles:
                known = ", ".join(sorted(topology.device_profiles))
                raise FieldError(
                    ("compress", "budgets", name),
                    f"unknown device profile {name!r}; expected one of: {known}",
                )
