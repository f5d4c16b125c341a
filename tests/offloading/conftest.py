"""Synthetic layer graphs (random DAGs and chains) for the partitioning tests."""

from __future__ import annotations

import numpy as np

from edgeintel.offloading.graph import LayerGraph, Tensor
from edgeintel.offloading.split_search import LinearCosts


def random_dag(
    n: int, seed: int, chain: bool = False, extra_edges: float = 0.5, outputs: int = 1
) -> LayerGraph:
    """n nodes in topological order; node i reads 1-2 earlier tensors (the input for node 0);
    the last node's tensor is an output, and ``outputs - 1`` earlier tensors are outputs too
    (read by later nodes as well, like an auxiliary head's logits)."""
    rng = np.random.default_rng(seed)
    readers: dict[int, list[int]] = {i: [] for i in range(-1, n)}
    readers[-1].append(0)
    for i in range(1, n):
        preds = {i - 1} if chain else {int(rng.integers(-1, i))}
        if not chain and rng.random() < extra_edges:
            preds.add(int(rng.integers(-1, i)))
        for p in preds:
            readers[p].append(i)
    for i in range(n - 1):  # every tensor is read later (no dead branches)
        if not readers[i]:
            readers[i].append(int(rng.integers(i + 1, n)))
    extra = set(rng.choice(np.arange(n - 1), size=outputs - 1, replace=False).tolist())
    tensors = [
        Tensor(
            f"t{p}",
            int(rng.integers(1_000, 400_000)),
            p,
            tuple(sorted(set(c))),
            p == n - 1 or p in extra,
        )
        for p, c in readers.items()
    ]
    return LayerGraph(
        names=tuple(f"n{i}" for i in range(n)),
        ops=("Op",) * n,
        tensors=tuple(tensors),
        input_name="t-1",
        output_names=tuple(t.name for t in tensors if t.is_output),
        input_shape=(1,),
    )


def random_costs(g: LayerGraph, seed: int) -> LinearCosts:
    rng = np.random.default_rng(seed + 1000)
    dev = rng.uniform(0.1, 10.0, g.num_nodes)
    return LinearCosts(
        device=dev,
        server=dev * rng.uniform(0.05, 0.5),
        comm=rng.uniform(0.5, 20.0, len(g.tensors)),
        down=np.where([t.is_output for t in g.tensors], rng.uniform(0, 1), 0.0),
        offload=float(rng.uniform(0, 5)),
    )
