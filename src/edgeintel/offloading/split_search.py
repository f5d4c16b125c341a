"""DNN partitioning: which layers run on the device and which on a server.

A split is a boolean mask over the layer graph's nodes (True = device). It is
valid when no device node consumes a tensor made on the server. Its cost is
linear in the layers and tensors (see ``LinearCosts``): device cost of each
device node, server cost of each server node, a transfer cost for every tensor
that crosses (counted once however many server nodes read it), and a constant
paid whenever anything runs remotely: RTT, queueing and the download of every
model output (the tail returns all of them). A model output made on the device
crosses like a tensor a server node reads (``LayerGraph.crossing``), so a model
with several outputs splits anywhere a single-output one does.

Split searches (``SPLITTERS``):

- ``chain`` (Neurosurgeon): exact search over every cut after a prefix of the
  topological order, vectorised with prefix sums; exact for chains;
- ``mincut`` (DADS): a minimum s-t cut of the layer DAG with
  ``scipy.sparse.csgraph.maximum_flow`` (device = source side), exact for any
  DAG; crossing tensors go through an auxiliary node so a tensor read by
  several server layers is paid once, and infinite reverse edges forbid
  server -> device dependencies;
- ``brute_force``: every valid mask (small graphs; the reference in tests).

``plan_split`` adds the objective and the deadline: under a deadline with the
energy or weighted objective, it sweeps a Lagrange multiplier on latency and
keeps the cheapest split that meets it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edgeintel.errors import ConfigError
from edgeintel.offloading.costs import (
    Breakdown,
    LinkState,
    OffloadObjective,
    Power,
    breakdown,
    device_energy_j,
    objective_value,
    transfer_ms,
)
from edgeintel.offloading.graph import LayerGraph
from edgeintel.offloading.transfer import int8_payload_bytes
from edgeintel.registry import Registry

__all__ = [
    "SPLITTERS",
    "LinearCosts",
    "MinCutSplitter",
    "SplitContext",
    "SplitDecision",
    "brute_force_split",
    "chain_split",
    "linear_costs",
    "linear_value",
    "mincut_split",
    "plan_split",
    "split_breakdown",
    "split_value",
]


@dataclass(frozen=True)
class SplitContext:
    """What one split decision depends on: per-node ms on each side, the link, the device.

    ``serialize_ms_per_mb``: device time to serialize 1 MB of intermediate
    (``int8``: quantize too, and send a quarter of the bytes); ``queue_ms``:
    expected queueing at the server.
    """

    device_ms: np.ndarray
    server_ms: np.ndarray
    link: LinkState
    power: Power = Power(1.0, 1.0, 0.0)  # noqa: RUF009 (frozen, shared safely)
    queue_ms: float = 0.0
    serialize_ms_per_mb: float = 0.0
    int8: bool = False
    objective: OffloadObjective = OffloadObjective.LATENCY
    latency_weight: float = 0.5

    @property
    def local_breakdown(self) -> Breakdown:
        return Breakdown(device_ms=float(np.sum(self.device_ms)))


def _sent_bytes(nbytes: int, int8: bool) -> int:
    return int8_payload_bytes(nbytes) if int8 else int(nbytes)


def split_breakdown(graph: LayerGraph, ctx: SplitContext, mask: np.ndarray) -> Breakdown:
    """Latency components of running ``mask`` nodes on the device, the rest on the server."""
    mask = np.asarray(mask, dtype=bool)
    dev = float(ctx.device_ms[mask].sum())
    if mask.all():
        return Breakdown(device_ms=dev)
    up = sum(_sent_bytes(t.bytes, ctx.int8) for t in graph.crossing(mask))
    raw = sum(t.bytes for t in graph.crossing(mask))
    down = sum(t.bytes for t in graph.tensors if t.is_output)
    rate = ctx.serialize_ms_per_mb
    return breakdown(
        dev,
        up,
        down,
        float(ctx.server_ms[~mask].sum()),
        ctx.link,
        queue_ms=ctx.queue_ms,
        serialize_ms=raw / 1e6 * rate,
    )


def _refs(ctx: SplitContext) -> tuple[float, float]:
    loc = ctx.local_breakdown
    return max(loc.latency_ms, 1e-9), max(device_energy_j(loc, ctx.power), 1e-12)


def split_value(graph: LayerGraph, ctx: SplitContext, mask: np.ndarray) -> float:
    """The objective of a split (ms, J, or weighted), computed directly (the reference)."""
    ref_l, ref_e = _refs(ctx)
    return objective_value(
        split_breakdown(graph, ctx, mask),
        ctx.power,
        ctx.objective,
        ctx.latency_weight,
        ref_l,
        ref_e,
    )


@dataclass(frozen=True)
class LinearCosts:
    """Objective units per device node (``device``), server node (``server``), crossing tensor
    (``comm``, per ``graph.tensors``), model output returned by the tail (``down``, per
    tensor; paid whenever anything is offloaded), and the constant paid when anything is
    offloaded (``offload``)."""

    device: np.ndarray
    server: np.ndarray
    comm: np.ndarray
    down: np.ndarray
    offload: float


def linear_costs(graph: LayerGraph, ctx: SplitContext) -> LinearCosts:
    """The split objective decomposed per node and tensor (exact: the objective is linear)."""
    if not ctx.link.up:
        raise ConfigError("the link is down: only local execution is possible")
    nbytes = np.array([t.bytes for t in graph.tensors], dtype=float)
    sent = np.array([_sent_bytes(t.bytes, ctx.int8) for t in graph.tensors], dtype=float)
    ser = nbytes / 1e6 * ctx.serialize_ms_per_mb
    up = np.array([transfer_ms(b, ctx.link.uplink_mbps) for b in sent])
    is_out = np.array([t.is_output for t in graph.tensors])
    down = np.where(is_out, [transfer_ms(b, ctx.link.down_mbps) for b in nbytes], 0.0)
    const = ctx.link.rtt_ms + ctx.queue_ms
    dev, srv = np.asarray(ctx.device_ms, float), np.asarray(ctx.server_ms, float)
    obj = OffloadObjective(ctx.objective)
    p = ctx.power
    lat = LinearCosts(dev, srv, ser + up, down, const)
    en = LinearCosts(
        p.compute_w * dev / 1e3,
        p.idle_w * srv / 1e3,
        (p.compute_w * ser + p.tx_w * up) / 1e3,
        p.idle_w * down / 1e3,
        p.idle_w * const / 1e3,
    )
    if obj is OffloadObjective.LATENCY:
        return lat
    if obj is OffloadObjective.ENERGY:
        return en
    w = ctx.latency_weight
    ref_l, ref_e = _refs(ctx)
    a, b = w / ref_l, (1 - w) / ref_e
    return LinearCosts(
        device=a * lat.device + b * en.device,
        server=a * lat.server + b * en.server,
        comm=a * lat.comm + b * en.comm,
        down=a * lat.down + b * en.down,
        offload=a * lat.offload + b * en.offload,
    )


def linear_value(graph: LayerGraph, lin: LinearCosts, mask: np.ndarray) -> float:
    """The objective of ``mask`` from linear costs (equals ``split_value``)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.all():
        return float(lin.device.sum())
    total = float(lin.device[mask].sum() + lin.server[~mask].sum()) + lin.offload
    for j, t in enumerate(graph.tensors):
        made_here = t.producer < 0 or mask[t.producer]
        if made_here and (t.is_output or any(not mask[c] for c in t.consumers)):
            total += lin.comm[j]
        if t.is_output:
            total += lin.down[j]
    return total


Splitter = Callable[[LayerGraph, LinearCosts], np.ndarray]
SPLITTERS: Registry[Splitter] = Registry("split search")


@SPLITTERS.register("chain")
def chain_split(graph: LayerGraph, lin: LinearCosts) -> np.ndarray:
    """Best cut after a prefix of the topological order (Neurosurgeon), O(nodes + tensors)."""
    n = graph.num_nodes
    cost = _prefix_costs(graph, lin)
    k = int(np.argmin(cost))  # ties: the smallest k (offload early), deterministic
    return graph.prefix_mask(k) if k < n else np.ones(n, dtype=bool)


def _prefix_costs(graph: LayerGraph, lin: LinearCosts) -> np.ndarray:
    """Objective of every prefix cut k = 0..n (k nodes on the device)."""
    n = graph.num_nodes
    dev = np.concatenate([[0.0], np.cumsum(lin.device)])
    srv = np.concatenate([np.cumsum(lin.server[::-1])[::-1], [0.0]])
    diff = np.zeros(n + 2)
    for j, t in enumerate(graph.tensors):
        if t.consumers or t.is_output:
            # crosses for lo <= k <= hi; an output made on the device crosses while k < n
            lo, hi = t.producer + 1, max((*t.consumers, n - 1) if t.is_output else t.consumers)
            if lo <= hi:
                diff[lo] += lin.comm[j]
                diff[hi + 1] -= lin.comm[j]
    comm = np.cumsum(diff)[: n + 1]
    outputs = [j for j, t in enumerate(graph.tensors) if t.is_output]
    offload = np.full(n + 1, lin.offload + float(np.sum(lin.down[outputs])))
    offload[n] = 0.0
    return dev + srv + comm + offload


@SPLITTERS.register("brute_force")
def brute_force_split(graph: LayerGraph, lin: LinearCosts) -> np.ndarray:
    """Every valid mask (2^n; n <= 20): the reference for the other split searches."""
    n = graph.num_nodes
    if n > 20:
        raise ConfigError(f"brute_force partitioning is for graphs of <= 20 nodes, got {n}")
    best, best_mask = np.inf, np.ones(n, dtype=bool)
    for bits in itertools.product([True, False], repeat=n):
        mask = np.array(bits)
        if graph.is_valid_cut(mask):
            v = linear_value(graph, lin, mask)
            if v < best - 1e-12:
                best, best_mask = v, mask
    return best_mask


@dataclass
class MinCutSplitter:
    """DADS min-cut over a fixed layer graph: the flow network's structure is built once and
    each decision only refills the capacities (``decide``: ~1-2 ms on a 2,000-node DAG)."""

    graph: LayerGraph
    _rows: np.ndarray = field(init=False, repr=False)
    _cols: np.ndarray = field(init=False, repr=False)
    _size: int = field(init=False)

    def __post_init__(self) -> None:
        g = self.graph
        n, m = g.num_nodes, len(g.tensors)
        nodes = np.arange(n)
        prod = np.array([t.producer for t in g.tensors], dtype=np.int64)
        src = np.where(prod < 0, 0, prod + 2)
        aux = 2 + n + np.arange(m)
        cons_aux, cons_node = [], []
        prec = set()
        for j, t in enumerate(g.tensors):
            # a model output has the sink (the server side) as a reader: made on the
            # device, it crosses like any tensor a server node reads
            for c in (*t.consumers, -1) if t.is_output else t.consumers:
                cons_aux.append(2 + n + j)
                cons_node.append(2 + c if c >= 0 else 1)
                if t.producer >= 0 and c >= 0:
                    prec.add((2 + c, 2 + t.producer))
        prec_r, prec_c = (
            (np.array(x, dtype=np.int64) for x in zip(*sorted(prec), strict=True))
            if prec
            else (np.zeros(0, np.int64), np.zeros(0, np.int64))
        )
        self._n_fixed = (n, n, m)
        self._rows = np.concatenate(
            [np.zeros(n, np.int64), nodes + 2, src, np.array(cons_aux, np.int64), prec_r]
        )
        self._cols = np.concatenate(
            [nodes + 2, np.ones(n, np.int64), aux, np.array(cons_node, np.int64), prec_c]
        )
        self._n_inf = len(cons_aux) + len(prec_r)
        self._size = 2 + n + m

    def decide(self, lin: LinearCosts) -> np.ndarray:
        """The device mask of a minimum cut (before the constant offload and download costs)."""
        from scipy.sparse import csr_matrix
        from scipy.sparse.csgraph import breadth_first_order, maximum_flow

        n = self.graph.num_nodes
        s_to_v = lin.server.astype(float)
        finite = np.concatenate([s_to_v, lin.device, lin.comm])
        if np.any(finite < 0) or not np.all(np.isfinite(finite)):
            raise ConfigError(_bad_cost(self.graph, s_to_v, lin))
        total = float(finite.sum())
        scale = (2**29) / total if total > 0 else 1.0
        data = np.concatenate([np.rint(finite * scale), np.full(self._n_inf, 2**30)]).astype(
            np.int32
        )
        cap = csr_matrix((data, (self._rows, self._cols)), shape=(self._size, self._size))
        flow = maximum_flow(cap, 0, 1)
        resid = cap - flow.flow
        resid.data[resid.data < 0] = 0
        resid.eliminate_zeros()
        reach = breadth_first_order(resid, 0, directed=True, return_predecessors=False)
        on_device = np.zeros(self._size, dtype=bool)
        on_device[reach] = True
        return on_device[2 : 2 + n]


@SPLITTERS.register("mincut")
def mincut_split(graph: LayerGraph, lin: LinearCosts) -> np.ndarray:
    """Minimum s-t cut (DADS); compares with all-local since the offload constant is not a cut."""
    mask = MinCutSplitter(graph).decide(lin)
    return _with_local(graph, lin, mask)


def _with_local(graph: LayerGraph, lin: LinearCosts, mask: np.ndarray) -> np.ndarray:
    local = np.ones(graph.num_nodes, dtype=bool)
    if linear_value(graph, lin, local) <= linear_value(graph, lin, mask):
        return local
    return mask


@dataclass(frozen=True)
class SplitDecision:
    """A chosen split: device mask, its latency components, energy (J) and objective value."""

    mask: np.ndarray
    breakdown: Breakdown
    energy_j: float
    value: float
    meets_deadline: bool

    @property
    def device_nodes(self) -> int:
        return int(self.mask.sum())

    @property
    def kind(self) -> str:
        if self.mask.all():
            return "local"
        return "remote" if not self.mask.any() else "split"


def _decision(
    graph: LayerGraph, ctx: SplitContext, mask: np.ndarray, deadline_ms: float | None
) -> SplitDecision:
    b = split_breakdown(graph, ctx, mask)
    return SplitDecision(
        mask=np.asarray(mask, dtype=bool),
        breakdown=b,
        energy_j=device_energy_j(b, ctx.power),
        value=split_value(graph, ctx, mask),
        meets_deadline=deadline_ms is None or b.latency_ms <= deadline_ms + 1e-9,
    )


def plan_split(
    graph: LayerGraph,
    ctx: SplitContext,
    splitter: str = "mincut",
    deadline_ms: float | None = None,
    splitter_obj: MinCutSplitter | None = None,
) -> SplitDecision:
    """The best split for ``ctx.objective`` that meets ``deadline_ms`` (if any can).

    When the link is down only local execution remains. Under a deadline, the
    latency objective keeps its optimum; energy / weighted sweep a multiplier
    on latency (``objective + mu * latency``) and keep the cheapest feasible
    split; if none meets the deadline, the fastest split is returned with
    ``meets_deadline=False``.
    """
    local = np.ones(graph.num_nodes, dtype=bool)
    if not ctx.link.up:
        return _decision(graph, ctx, local, deadline_ms)
    fn = SPLITTERS.get(splitter)

    def solve(c: SplitContext) -> np.ndarray:
        lin = linear_costs(graph, c)
        if splitter == "mincut" and splitter_obj is not None:
            return _with_local(graph, lin, splitter_obj.decide(lin))
        return fn(graph, lin)

    best = _decision(graph, ctx, solve(ctx), deadline_ms)
    if deadline_ms is None or best.meets_deadline or ctx.objective == OffloadObjective.LATENCY:
        return best
    fastest = _decision(
        graph, ctx, solve(_replace(ctx, objective=OffloadObjective.LATENCY)), deadline_ms
    )
    if not fastest.meets_deadline:
        return fastest
    feasible = [fastest]
    lin_obj = linear_costs(graph, ctx)
    lin_lat = linear_costs(graph, _replace(ctx, objective=OffloadObjective.LATENCY))
    for mu in np.geomspace(1e-4, 1e4, 25) * (
        np.sum(lin_obj.device) / max(np.sum(lin_lat.device), 1e-12)
    ):
        mixed = LinearCosts(
            lin_obj.device + mu * lin_lat.device,
            lin_obj.server + mu * lin_lat.server,
            lin_obj.comm + mu * lin_lat.comm,
            lin_obj.down + mu * lin_lat.down,
            lin_obj.offload + mu * lin_lat.offload,
        )
        if splitter == "mincut":
            m = _with_local(graph, mixed, (splitter_obj or MinCutSplitter(graph)).decide(mixed))
        else:
            m = fn(graph, mixed)
        d = _decision(graph, ctx, m, deadline_ms)
        if d.meets_deadline:
            feasible.append(d)
    return min(feasible, key=lambda d: d.value)


def _replace(ctx: SplitContext, **kw: object) -> SplitContext:
    from dataclasses import replace

    return replace(ctx, **kw)  # type: ignore[arg-type]


def _bad_cost(g: LayerGraph, server: np.ndarray, lin: LinearCosts) -> str:
    """Which split cost is negative or not finite, and where such costs come from."""
    for kind, arr, names in (
        ("server time", server, g.names),
        ("device time", lin.device, g.names),
        ("transfer", lin.comm, [f"tensor {t.name}" for t in g.tensors]),
    ):
        bad = np.flatnonzero(~np.isfinite(arr) | (arr < 0))
        if len(bad):
            i = int(bad[0])
            name = names[i] if i < len(names) else f"#{i}"
            return (
                f"split costs must be finite and >= 0: the {kind} of {name} is {arr[i]:g} "
                f"({len(bad)} such cost(s)); they come from the model profile "
                "(settings.offloading.profile_file or the profiler) and the links' bandwidth"
            )
    return "split costs must be finite and >= 0"
