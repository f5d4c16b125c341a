"""ONNX Runtime: the fp32 ONNX file as is, int8 by ORT's static QDQ quantizer (real calibration)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx

from edgeintel.errors import ConfigError
from edgeintel.inference.runtimes import RUNTIMES
from edgeintel.inference.runtimes.base import (
    ExportSource,
    Predictor,
    Probe,
    Runtime,
    SessionPredictor,
)
from edgeintel.onnx_files import make_session

__all__ = ["ONNX_RUNTIME", "node_outputs", "with_outputs"]


def _export(source: ExportSource, out_dir: Path, precision: str, calib: np.ndarray | None) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    dst = out_dir / f"model_{precision}.onnx"
    if precision == "fp32":
        shutil.copyfile(source.onnx_path, dst)
        return dst
    if calib is None:
        raise ConfigError("onnxruntime int8 needs calibration samples (real data)")
    from edgeintel.inference.quantize import QuantizeStaticConfig, quantize_static_onnx

    quantize_static_onnx(source.onnx_path, dst, calib, QuantizeStaticConfig())
    return dst


def _load(path: Path) -> Predictor:
    """An ONNX Runtime CPU session (one intra-op thread) of ``path``."""
    return SessionPredictor(make_session(path))


def node_outputs(model: onnx.ModelProto) -> list[str]:
    """Every node output tensor name of ``model``'s graph, in its (topological) node order."""
    return [o for n in model.graph.node for o in n.output if o]


def with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of ``model`` whose graph also outputs the tensors ``names`` it computes."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    have = {o.name for o in probe.graph.output}
    computed = set(node_outputs(probe))
    for name in names:
        if name in computed and name not in have:
            probe.graph.output.append(onnx.ValueInfoProto(name=name))
            have.add(name)
    return probe


def _probe(path: Path, names: list[str]) -> Probe:
    """Run the ONNX file with ``names`` added as graph outputs (graph optimisations off)."""
    model = with_outputs(onnx.load(str(path)), names)
    with tempfile.TemporaryDirectory() as tmp:
        probe_path = Path(tmp) / "probe.onnx"
        onnx.save(model, str(probe_path))
        sess = make_session(probe_path, optimize=False)
    out_names = [o.name for o in sess.get_outputs()]
    inp = sess.get_inputs()[0].name

    def run(batch: np.ndarray) -> dict[str, np.ndarray]:
        values = sess.run(None, {inp: np.ascontiguousarray(batch, dtype=np.float32)})
        return dict(zip(out_names, (np.asarray(v) for v in values), strict=True))

    return run


ONNX_RUNTIME = Runtime(
    name="onnxruntime",
    suffix=".onnx",
    imports=("onnxruntime",),
    export=_export,
    load=_load,
    probe=_probe,
    notes="fp32: the exported ONNX file; int8: ORT static QDQ, per-channel, min-max calibration",
)
RUNTIMES.add("onnxruntime", ONNX_RUNTIME)
