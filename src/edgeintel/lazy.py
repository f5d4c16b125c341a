"""Lazy package faces: a package's public names load from their submodule on first use.

``import edgeintel.scenario`` must stay light (no torch, ONNX Runtime, scipy.stats,
dp-accounting or cryptography), yet ``from edgeintel.training import FederatedEngine``
should keep working. A package's ``__init__`` therefore imports its public names only
under ``TYPE_CHECKING`` (type checkers and readers see them there) and ends with::

    __getattr__, __dir__ = lazy_face(__name__, __file__)

``lazy_face`` reads that ``if TYPE_CHECKING:`` block (``from edgeintel.x import a, b``)
as the face's table, so the names are listed once, as in the ``attach_stub`` of
Scientific Python's SPEC 1 (lazy_loader). The first ``package.a`` imports
``edgeintel.x`` and keeps ``a`` on the package. A public name equal to a submodule's
name (``edgeintel.training.aggregate`` the function, beside ``training/aggregate.py``)
stays the function after that submodule is imported, as an eager face would have it.
"""

from __future__ import annotations

import ast
import importlib
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["face_table", "lazy_face"]


def face_table(init_file: str | Path) -> dict[str, str]:
    """``{public name: module it comes from}`` read from an ``__init__``'s TYPE_CHECKING block."""
    tree = ast.parse(Path(init_file).read_text(encoding="utf-8"))
    table: dict[str, str] = {}
    for node in tree.body:
        if not (isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)):
            continue
        for stmt in node.body:
            if isinstance(stmt, ast.ImportFrom) and stmt.module and stmt.level == 0:
                for alias in stmt.names:
                    table[alias.asname or alias.name] = stmt.module
    return table


class _Face(types.ModuleType):
    """A package module whose public names win over same-named submodules (see above)."""

    _face_names: frozenset[str] = frozenset()

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and name in self._face_names:
            sub = f"{self.__name__}.{name}"
            if getattr(value, "__name__", None) == sub:  # the import system binding a submodule
                return
        super().__setattr__(name, value)


def lazy_face(
    package: str, init_file: str | Path
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, whose names come from ``init_file``'s table."""
    table = face_table(init_file)
    module = sys.modules[package]
    clashing = {n for n, src in table.items() if src != package and _is_submodule(package, n)}
    if clashing:
        module.__class__ = _Face
        vars(module)["_face_names"] = frozenset(clashing)

    def __getattr__(name: str) -> Any:
        source = table.get(name)
        if source is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        if source == package:  # ``from package import submodule`` in the table
            value: Any = importlib.import_module(f"{package}.{name}")
        else:
            value = getattr(importlib.import_module(source), name)
        vars(module)[name] = value  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(module)) | set(table))

    return __getattr__, __dir__


def _is_submodule(package: str, name: str) -> bool:
    """Whether ``package`` has a submodule (or subpackage) called ``name``, without importing it."""
    paths = getattr(sys.modules[package], "__path__", None) or []
    return any((Path(p) / f"{name}.py").is_file() or (Path(p) / name).is_dir() for p in paths)
