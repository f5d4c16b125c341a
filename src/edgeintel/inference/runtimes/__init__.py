"""Device runtimes behind one registry: export an artifact, load it, run it, measure it.

``RUNTIMES`` names every runtime up front (``provide``) so a scenario or a CLI flag can be
checked against the names without importing torch or a runtime; each runtime's module is
imported on its first ``RUNTIMES.get``. A runtime is a ``Runtime`` record (``base.py``):
``export(source, out_dir, precision, calibration) -> artifact path`` and
``load(artifact) -> Predictor`` (``run(batch) -> outputs``), plus ``probe`` where it can
expose intermediate tensors for layer localisation (``parity.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeintel.registry import Registry

if TYPE_CHECKING:
    from edgeintel.inference.runtimes.base import Runtime

__all__ = ["DEFAULT_RUNTIME", "PRECISIONS", "RUNTIMES"]

DEFAULT_RUNTIME = "onnxruntime"
PRECISIONS = ("fp32", "int8")

RUNTIMES: Registry[Runtime] = Registry("runtime")
RUNTIMES.provide("edgeintel.inference.runtimes.onnx_rt", "onnxruntime")
RUNTIMES.provide("edgeintel.inference.runtimes.openvino_rt", "openvino")
RUNTIMES.provide("edgeintel.inference.runtimes.executorch_rt", "executorch")
RUNTIMES.provide("edgeintel.inference.runtimes.litert_rt", "litert")
