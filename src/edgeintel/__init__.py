"""edgeintel: edge intelligence across devices, edge servers and the cloud."""

from edgeintel.errors import ConfigError, DataError, EdgeIntelError, ModelError
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
