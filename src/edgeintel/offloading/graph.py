"""The layer graph of an ONNX model: compute nodes, the tensors between them and their bytes.

Nodes that depend (transitively) on the graph input are the layers a split can
separate; nodes fed only by weights (e.g. the ``Identity`` aliases the
TorchScript exporter emits for shared weights) are constants that both sides
of a split carry with their weights and are left out. ONNX stores nodes in a
topological order, which the graph keeps.

Tensor sizes come from ONNX shape inference at batch 1 (a symbolic batch axis
counts as 1); the byte size is the number of elements times the element size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeintel.errors import ModelError

__all__ = ["LayerGraph", "Tensor", "load_layer_graph"]

_ELEM_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2}


@dataclass(frozen=True)
class Tensor:
    """A tensor flowing between layers: its producer (-1 = the graph input) and consumers."""

    name: str
    bytes: int
    producer: int
    consumers: tuple[int, ...]
    is_output: bool = False


@dataclass(frozen=True)
class LayerGraph:
    """Compute nodes in topological order and the tensors between them (batch 1)."""

    names: tuple[str, ...]
    ops: tuple[str, ...]
    tensors: tuple[Tensor, ...]
    input_name: str
    output_names: tuple[str, ...]
    input_shape: tuple[int, ...]  # without the batch axis
    path: str = ""
    _index: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._index.update({n: i for i, n in enumerate(self.names)})

    @property
    def num_nodes(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """Position of node ``name``; a ``ModelError`` naming close matches if unknown."""
        try:
            return self._index[name]
        except KeyError:
            hint = ", ".join(n for n in self.names if name.lower() in n.lower())[:200]
            raise ModelError(
                f"unknown node {name!r} in {self.path or 'the model'}"
                + (f"; did you mean one of: {hint}" if hint else f" ({self.num_nodes} nodes)")
            ) from None

    def edges(self) -> list[tuple[int, int]]:
        """Producer -> consumer pairs between compute nodes (deduplicated)."""
        out = {(t.producer, c) for t in self.tensors if t.producer >= 0 for c in t.consumers}
        return sorted(out)

    def crossing(self, on_device: np.ndarray) -> list[Tensor]:
        """Tensors that must travel device -> server when nodes with ``on_device[i]`` run there.

        The graph input is on the device; a tensor crosses when it is produced on
        the device (or is the input) and consumed by a node on the server. When
        anything runs on the server, a model output made on the device crosses too:
        the tail returns every output, so it travels with the crossing tensors.
        """
        remote = not bool(np.all(on_device))
        out = []
        for t in self.tensors:
            made_here = t.producer < 0 or bool(on_device[t.producer])
            if made_here and (
                any(not on_device[c] for c in t.consumers) or (remote and t.is_output)
            ):
                out.append(t)
        return out

    def is_valid_cut(self, on_device: np.ndarray) -> bool:
        """True when no device node consumes a tensor produced on the server."""
        return all(
            not (t.producer >= 0 and not on_device[t.producer] and on_device[c])
            for t in self.tensors
            for c in t.consumers
        )

    def prefix_mask(self, k: int) -> np.ndarray:
        """Device mask of the cut after the first ``k`` nodes of the topological order."""
        mask = np.zeros(self.num_nodes, dtype=bool)
        mask[:k] = True
        return mask


def _tensor_bytes(vi: Any) -> int | None:
    tt = vi.type.tensor_type
    if not tt.HasField("shape"):
        return None
    n = 1
    for d in tt.shape.dim:
        if d.HasField("dim_value"):
            n *= int(d.dim_value)
        elif d.HasField("dim_param"):
            n *= 1  # the batch axis
        else:
            return None
    return n * _ELEM_BYTES.get(int(tt.elem_type), 4)


def load_layer_graph(model: str | Path | Any) -> LayerGraph:
    """Build the layer graph of an ONNX file (or ``onnx.ModelProto``) after shape inference."""
    import onnx

    path = ""
    if isinstance(model, str | Path):
        path = str(model)
        if not Path(path).is_file():
            raise ModelError(f"model file not found: {path}")
        try:
            model = onnx.load(path)
        except Exception as exc:
            raise ModelError(f"{path}: not an ONNX model ({exc.__class__.__name__})") from None
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    inits = {i.name for i in g.initializer}
    real_inputs = [i for i in g.input if i.name not in inits]
    if len(real_inputs) != 1:
        raise ModelError(f"{path or 'model'}: expected one input, got {len(real_inputs)}")
    inp = real_inputs[0]
    sizes: dict[str, int | None] = {}
    for vi in [*g.value_info, *g.output, inp]:
        sizes[vi.name] = _tensor_bytes(vi)
    dynamic = {inp.name}
    keep: list[Any] = []
    for node in g.node:
        if any(x in dynamic for x in node.input if x):
            keep.append(node)
            dynamic.update(o for o in node.output if o)
    names = []
    for i, node in enumerate(keep):
        names.append(node.name or f"{node.op_type}_{i}")
    if len(set(names)) != len(names):
        raise ModelError(f"{path or 'model'}: node names are not unique")
    producer = {inp.name: -1}
    for i, node in enumerate(keep):
        for o in node.output:
            if o:
                producer[o] = i
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(keep):
        for x in node.input:
            if x in producer and i not in consumers.setdefault(x, []):
                consumers[x].append(i)
    outputs = tuple(o.name for o in g.output)
    tensors = []
    for name, prod in producer.items():
        cons = tuple(consumers.get(name, []))
        if not cons and name not in outputs:
            continue
        size = sizes.get(name)
        if size is None:
            raise ModelError(f"{path or 'model'}: shape inference left tensor {name!r} unsized")
        tensors.append(Tensor(name, size, prod, cons, name in outputs))
    shape = tuple(
        int(d.dim_value) if d.HasField("dim_value") else 1 for d in inp.type.tensor_type.shape.dim
    )[1:]  # without the batch axis
    return LayerGraph(
        names=tuple(names),
        ops=tuple(n.op_type for n in keep),
        tensors=tuple(tensors),
        input_name=inp.name,
        output_names=outputs,
        input_shape=shape,
        path=path,
    )
