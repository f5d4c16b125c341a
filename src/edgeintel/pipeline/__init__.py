"""The ``edgeintel run`` pipeline: registered stages over a shared run context."""

# Importing the stages and sections packages registers every stage and section renderer.
from edgeintel.pipeline import sections, stages
from edgeintel.pipeline.core import (
    STAGES,
    Figure,
    RunContext,
    RunResult,
    Stage,
    check_run_dir,
    ordered_stages,
    register_stage,
    run_pipeline,
)
from edgeintel.pipeline.preflight import PreflightReport, preflight
from edgeintel.pipeline.stages.federated_finetune import FederatedFinetuner

__all__ = [
    "STAGES",
    "FederatedFinetuner",
    "Figure",
    "PreflightReport",
    "RunContext",
    "RunResult",
    "Stage",
    "check_run_dir",
    "ordered_stages",
    "preflight",
    "register_stage",
    "run_pipeline",
    "sections",
    "stages",
]
