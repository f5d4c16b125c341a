"""The registered stages of ``edgeintel run``, one module per stage (or family of stages).

Importing this package registers every stage in ``pipeline.core.STAGES``; a stage
module imports the section renderer of the results it writes (``pipeline.sections``).
Stages hand over through typed fields of the ``RunContext`` (never by re-reading another
stage's results section).
"""

from edgeintel.pipeline.stages import (
    basic_stages,
    caching_stage,
    compress_stage,
    edge_train_stage,
    offloading_stage,
    runtime_stage,
)

__all__ = [
    "basic_stages",
    "caching_stage",
    "compress_stage",
    "edge_train_stage",
    "offloading_stage",
    "runtime_stage",
]
