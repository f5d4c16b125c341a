"""edgeintel: edge intelligence across devices, edge servers and the cloud.

A lazy face (``edgeintel.lazy``): ``import edgeintel`` and the CLI's start stay light;
the scenario module loads on the first use of one of its names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeintel.errors import ConfigError, DataError, EdgeIntelError, ModelError
from edgeintel.lazy import lazy_face

if TYPE_CHECKING:
    from edgeintel.scenario import Scenario, load_scenario, parse_scenario

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "EdgeIntelError",
    "ModelError",
    "Scenario",
    "__version__",
    "load_scenario",
    "parse_scenario",
]

__getattr__, __dir__ = lazy_face(__name__, __file__)
