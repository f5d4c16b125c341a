"""The ``edgeintel run`` pipeline: registered stages over a shared run context."""

# Importing a stage module registers its stages; components add theirs here.
from edgeintel.pipeline import caching as _caching  # noqa: F401
from edgeintel.pipeline import compress as _compress  # noqa: F401
from edgeintel.pipeline import edge_training as _edge_training  # noqa: F401
from edgeintel.pipeline import offloading as _offloading  # noqa: F401
from edgeintel.pipeline import runtime as _runtime  # noqa: F401
from edgeintel.pipeline import sim_section as _sim_section  # noqa: F401  (edgeintel simulate)
from edgeintel.pipeline import stages as _stages  # noqa: F401
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
from edgeintel.pipeline.federated_finetune import FederatedFinetuner
from edgeintel.pipeline.preflight import PreflightReport, preflight

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
]
