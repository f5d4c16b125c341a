"""LiteRT (TFLite): registered, but blocked on this install, with the reason in one line.

Its converter cannot install beside the pinned torch 2.13: ``litert-torch`` 0.10 (the only
release) needs ``xdsl``, which pins ``typing_extensions<4.13`` (torch 2.13 needs 4.16), and
``ai-edge-torch`` 0.7.2 depends on that same ``litert-torch``. A device profile may name
``litert`` (the name is valid, so a scenario says what its devices run); exporting or loading
a ``.tflite`` artifact raises ``MissingExtraError`` saying why, and the parity matrix shows
that line in the runtime's rows. When a compatible converter appears, ``_export`` and
``_load`` are the two functions to fill in (docs/runtimes.md, "Adding a runtime").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeintel.errors import MissingExtraError
from edgeintel.inference.runtimes import RUNTIMES
from edgeintel.inference.runtimes.base import ExportSource, Predictor, Runtime

__all__ = ["BLOCKED", "LITERT"]

BLOCKED = (
    "LiteRT is blocked on this install: its converter litert-torch 0.10 needs xdsl, which "
    "pins typing_extensions<4.13 (torch 2.13 needs >=4.16), and ai-edge-torch 0.7 pulls the "
    "same litert-torch; there is no edgeintel[litert] extra until they agree"
)


def _export(source: ExportSource, out_dir: Path, precision: str, calib: np.ndarray | None) -> Path:
    raise MissingExtraError(BLOCKED)


def _load(path: Path) -> Predictor:
    raise MissingExtraError(BLOCKED)


LITERT = Runtime(
    name="litert",
    suffix=".tflite",
    imports=(),
    export=_export,
    load=_load,
    probe=None,
    notes="blocked: " + BLOCKED,
)
RUNTIMES.add("litert", LITERT)
