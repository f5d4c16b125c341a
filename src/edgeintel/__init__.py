"""edgeintel: edge intelligence across devices, edge servers and the cloud."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgeintel.errors import ConfigError, DataError, EdgeIntelError, ModelError

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

_SCENARIO_NAMES = ("Scenario", "load_scenario", "parse_scenario")


def __getattr__(name: str) -> Any:
    # The scenario composes every component's settings (and so imports torch); load it
    # on first use, so that `import edgeintel` and the CLI's start stay light.
    if name in _SCENARIO_NAMES:
        from edgeintel import scenario

        return getattr(scenario, name)
    raise AttributeError(f"module 'edgeintel' has no attribute {name!r}")
