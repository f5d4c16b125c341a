"""A tiny name -> object registry used for everything users extend.

Datasets, partitioners, model families, pipeline stages, aggregation rules,
compressors and cache policies all register through one of these, so adding a
technique is one new function plus one decorator. A registry whose entries live in
heavy modules (torch models, compression techniques) names them up front with
``provide``, so a scenario can be checked against the names without importing torch;
the module is imported on the first ``get`` of one of its names.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from edgeintel.errors import ConfigError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; ``get`` raises a ConfigError listing the known names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._provided: dict[str, str] = {}  # name -> module whose import registers it

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@REG.register("name")`` stores the decorated object under ``name``."""

        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            self._provided.pop(name, None)
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        """Register ``obj`` under ``name`` (non-decorator form)."""
        self.register(name)(obj)

    def provide(self, module: str, *names: str) -> None:
        """Declare that importing ``module`` registers ``names`` (imported on first ``get``)."""
        for name in names:
            if name in self._items or name in self._provided:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._provided[name] = module

    def check(self, name: str) -> None:
        """Raise the ``ConfigError`` of ``get`` for an unknown name, importing nothing."""
        if name not in self:
            known = ", ".join(self.names()) or "none"
            raise ConfigError(f"unknown {self.kind} {name!r}; expected one of: {known}")

    def get(self, name: str) -> T:
        if name not in self._items and name in self._provided:
            module = self._provided[name]
            importlib.import_module(module)
            if name not in self._items:
                raise RuntimeError(f"{module} does not register the {self.kind} {name!r}")
        self.check(name)
        return self._items[name]

    def names(self) -> list[str]:
        """Every registered name, including those provided by a module not imported yet."""
        return sorted({*self._items, *self._provided})

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._provided

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items) + len(self._provided)
