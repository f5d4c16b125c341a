"""Report renderers of the results sections (``report.sections.register_section``), one
module per component: they read a section of results.json and return HTML, so a run's
report can be re-rendered from its folder (``edgeintel report``) without running a stage.

Importing this package registers every renderer.
"""

from edgeintel.pipeline.sections import (
    caching_section,
    data_section,
    inference_section,
    offloading_section,
    payoff_section,
    runtime_section,
    sim_section,
    training_section,
)

__all__ = [
    "caching_section",
    "data_section",
    "inference_section",
    "offloading_section",
    "payoff_section",
    "runtime_section",
    "sim_section",
    "training_section",
]
