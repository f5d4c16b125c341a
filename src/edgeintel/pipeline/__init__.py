"""The ``edgeintel run`` pipeline: registered stages over a shared run context.

A lazy face (``edgeintel.lazy``): each name loads its module on first use, so the CLI can
check ``--stage`` names and the run folder and print its first line before the components
are imported. The built-in stages are named in ``core.STAGES`` and each stage module is
imported (``pipeline.stages``: every stage and the renderers of their report sections)
when a stage is first asked for; ``pipeline.sections`` registers every section renderer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeintel.lazy import lazy_face

if TYPE_CHECKING:
    from edgeintel.pipeline import sections, stages
    from edgeintel.pipeline.core import (
        STAGES,
        Figure,
        Prepared,
        RunContext,
        RunResult,
        Stage,
        check_run_dir,
        check_stages,
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
    "Prepared",
    "RunContext",
    "RunResult",
    "Stage",
    "check_run_dir",
    "check_stages",
    "ordered_stages",
    "preflight",
    "register_stage",
    "run_pipeline",
    "sections",
    "stages",
]

__getattr__, __dir__ = lazy_face(__name__, __file__)
