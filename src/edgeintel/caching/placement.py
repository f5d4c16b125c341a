"""Proactive placement across base stations, with cooperation between neighbours.

Each station ``s`` caches at most ``capacity[s]`` items (its ``cache_mb`` over
the item size). A request for item ``i`` at ``s`` is served from ``s``'s own
cache (``local_ms``), else from a neighbouring station that holds ``i``
(``neighbour_ms``, cooperative delivery only), else from the cloud
(``cloud_ms``, over the backhaul). Placement maximises the latency saved,
``sum_s sum_i demand[s, i] * (cloud_ms - ms of the best holder)``, a monotone
submodular function under a partition-matroid constraint for equal-size
items, so the greedy rule of FemtoCaching (Shanmugam et al., 2013) is within
a factor 2 of the optimum; ``lp_placement`` gives the LP upper bound (and,
with ``integral=True``, the exact MILP optimum) through ``scipy.optimize.milp``
(HiGHS). ``choose_models`` is the 0/1 knapsack of which models an edge server
keeps loaded in its memory. ``tiered_placement`` adds the device tier: each
device fills its own ``cache_mb`` first, then the stations are placed on the
demand the devices do not serve themselves.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeintel.errors import ConfigError, DataError
from edgeintel.limits import ensure_fits
from edgeintel.registry import Registry

__all__ = [
    "CONTENT_PLACEMENTS",
    "ContentPlacement",
    "Delivery",
    "DeliveryReport",
    "Placement",
    "TieredPlacement",
    "choose_models",
    "evaluate_delivery",
    "evaluate_tiered_delivery",
    "greedy_placement",
    "lp_placement",
    "popularity_placement",
    "tiered_placement",
    "zipf_demand",
]


@dataclass(frozen=True)
class Delivery:
    """Fetch latency (ms) from the device's own cache, its station's, a neighbour's, the cloud."""

    local_ms: float = 5.0
    neighbour_ms: float = 20.0
    cloud_ms: float = 100.0
    device_ms: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.device_ms <= self.local_ms:
            raise ConfigError(
                f"delivery latencies must satisfy 0 <= device_ms <= local_ms, got "
                f"{self.device_ms}, {self.local_ms}"
            )
        if not 0 <= self.local_ms <= self.neighbour_ms <= self.cloud_ms:
            raise ConfigError(
                "delivery latencies must satisfy 0 <= local_ms <= neighbour_ms <= cloud_ms, got "
                f"{self.local_ms}, {self.neighbour_ms}, {self.cloud_ms}"
            )


@dataclass
class Placement:
    """``cached[s]``: sorted item ids station ``s`` keeps; ``value``: latency saved (ms)."""

    cached: list[np.ndarray]
    value: float
    seconds: float
    method: str
    bound: float | None = None

    def matrix(self, items: int) -> np.ndarray:
        x = np.zeros((len(self.cached), items), dtype=bool)
        for s, ids in enumerate(self.cached):
            x[s, ids] = True
        return x


def _check(
    demand: np.ndarray, capacity: Sequence[int], neighbours: Sequence[Sequence[int]] | None
) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    d = np.asarray(demand, dtype=np.float64)
    if d.ndim != 2 or d.size == 0:
        raise DataError(f"demand must be a non-empty (stations, items) matrix, got {d.shape}")
    # greedy and the LP hold a few (stations, items) float64 matrices at once
    ensure_fits(6.0 * 8 * d.size, f"content placement over {d.shape[0]} x {d.shape[1]} items")
    if (d < 0).any() or not np.isfinite(d).all():
        raise DataError("demand must be finite and >= 0")
    cap = np.asarray(capacity, dtype=np.int64)
    if cap.shape != (d.shape[0],):
        raise ConfigError(f"need one capacity per station ({d.shape[0]}), got {cap.shape}")
    if (cap < 0).any():
        raise ConfigError(f"cache capacities must be >= 0 items, got {cap.tolist()}")
    nb = [[] for _ in range(d.shape[0])] if neighbours is None else [list(n) for n in neighbours]
    if len(nb) != d.shape[0]:
        raise ConfigError(f"need a neighbour list per station ({d.shape[0]}), got {len(nb)}")
    for s, ns in enumerate(nb):
        for h in ns:
            if not 0 <= h < d.shape[0] or h == s:
                raise ConfigError(f"station {s}: invalid neighbour {h}")
    return d, cap, nb


def _value(x: np.ndarray, d: np.ndarray, nb: list[list[int]], dl: Delivery) -> float:
    gl, gn = dl.cloud_ms - dl.local_ms, dl.cloud_ms - dl.neighbour_ms
    total = 0.0
    for s in range(d.shape[0]):
        near = x[nb[s]].any(axis=0) if nb[s] else np.zeros(d.shape[1], dtype=bool)
        gain = np.where(x[s], gl, np.where(near, gn, 0.0))
        total += float(d[s] @ gain)
    return total


def greedy_placement(
    demand: np.ndarray,
    capacity: Sequence[int],
    neighbours: Sequence[Sequence[int]] | None = None,
    delivery: Delivery = Delivery(),
) -> Placement:
    """FemtoCaching's greedy: add the (station, item) of largest marginal saving until full.

    Marginal savings only shrink (submodularity), so each station keeps its
    best item and only rows whose best item was just placed nearby are rescanned.
    """
    t0 = time.perf_counter()
    d, cap, nb = _check(demand, capacity, neighbours)
    n_s, n_i = d.shape
    gl, gn = delivery.cloud_ms - delivery.local_ms, delivery.cloud_ms - delivery.neighbour_ms
    best = np.zeros((n_s, n_i))  # current saving per (requesting station, item)
    gain = d * gl
    for h in range(n_s):
        for s in nb[h]:
            gain[h] += d[s] * gn
    free = cap.copy()
    gain[free == 0] = -np.inf
    rowarg = gain.argmax(axis=1)
    rowmax = gain[np.arange(n_s), rowarg]
    served_by = [[h, *nb[h]] for h in range(n_s)]  # stations a cache at h serves
    serves = [[s, *nb[s]] for s in range(n_s)]  # stations whose cache serves s
    cached: list[list[int]] = [[] for _ in range(n_s)]
    total = 0.0
    while True:
        h = int(rowmax.argmax())
        if not rowmax[h] > 0:
            break
        i = int(rowarg[h])
        total += float(rowmax[h])
        cached[h].append(i)
        free[h] -= 1
        changed = []
        col = best[:, i]  # a view: updates write through
        for s in served_by[h]:
            g = gl if s == h else gn
            if g > col[s]:
                col[s] = g
                changed.append(s)
        touched = {hh for s in changed for hh in serves[s]}
        di, bi = d[:, i].tolist(), col.tolist()  # Python floats: cheaper than numpy scalars
        for hh in touched:
            if gain[hh, i] > -np.inf:
                gain[hh, i] = sum(
                    di[s] * max(0.0, (gl if s == hh else gn) - bi[s]) for s in served_by[hh]
                )
        gain[h, i] = -np.inf
        if free[h] == 0:
            gain[h] = -np.inf
        for hh in touched | {h}:
            if rowarg[hh] == i or free[hh] == 0:
                rowarg[hh] = gain[hh].argmax()
                rowmax[hh] = gain[hh, rowarg[hh]]
    return Placement(
        [np.sort(np.array(c, dtype=np.int64)) for c in cached],
        total,
        time.perf_counter() - t0,
        "greedy",
    )


def popularity_placement(demand: np.ndarray, capacity: Sequence[int]) -> Placement:
    """Each station keeps its own most requested items (no cooperation)."""
    t0 = time.perf_counter()
    d, cap, nb = _check(demand, capacity, None)
    cached = [np.sort(np.argsort(-d[s], kind="stable")[: cap[s]]) for s in range(d.shape[0])]
    p = Placement(cached, 0.0, 0.0, "popularity")
    p.value = _value(p.matrix(d.shape[1]), d, nb, Delivery())
    p.seconds = time.perf_counter() - t0
    return p


def lp_placement(
    demand: np.ndarray,
    capacity: Sequence[int],
    neighbours: Sequence[Sequence[int]] | None = None,
    delivery: Delivery = Delivery(),
    integral: bool = False,
    time_limit_s: float | None = None,
) -> Placement:
    """The placement LP (upper bound) or, with ``integral``, the exact MILP, via HiGHS.

    Variables: ``x[h, i]`` (h caches i) and ``y[s, h, i]`` (share of s's
    requests for i served by holder h in s and its neighbours);
    ``y <= x``, ``sum_h y[s, h, i] <= 1``, ``sum_i x[h, i] <= capacity[h]``.
    ``value`` is the objective (the bound); ``cached`` rounds ``x`` at 0.5.
    """
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_matrix

    t0 = time.perf_counter()
    d, cap, nb = _check(demand, capacity, neighbours)
    n_s, n_i = d.shape
    pairs = [(s, h) for s in range(n_s) for h in [s, *nb[s]]]
    n_x, n_y = n_s * n_i, len(pairs) * n_i
    gl, gn = delivery.cloud_ms - delivery.local_ms, delivery.cloud_ms - delivery.neighbour_ms
    c = np.zeros(n_x + n_y)
    rows, cols, vals = [], [], []
    items = np.arange(n_i)
    r = 0
    for p, (s, h) in enumerate(pairs):
        yi = n_x + p * n_i + items
        c[yi] = -d[s] * (gl if s == h else gn)
        # y[s,h,i] - x[h,i] <= 0
        rows += [r + items, r + items]
        cols += [yi, h * n_i + items]
        vals += [np.ones(n_i), -np.ones(n_i)]
        r += n_i
    ub = [np.zeros(r)]
    for s in range(n_s):  # sum_h y[s,h,i] <= 1
        for p, (s2, _) in enumerate(pairs):
            if s2 == s:
                rows.append(r + items)
                cols.append(n_x + p * n_i + items)
                vals.append(np.ones(n_i))
        r += n_i
        ub.append(np.ones(n_i))
    for h in range(n_s):  # capacity
        rows.append(np.full(n_i, r))
        cols.append(h * n_i + items)
        vals.append(np.ones(n_i))
        r += 1
        ub.append(np.array([cap[h]], dtype=np.float64))
    a = coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(r, n_x + n_y)
    ).tocsr()
    integrality = np.zeros(n_x + n_y)
    if integral:
        integrality[:n_x] = 1
    options: dict[str, Any] = {"disp": False}
    if time_limit_s is not None:
        options["time_limit"] = time_limit_s
    res = milp(
        c,
        constraints=LinearConstraint(a, -np.inf, np.concatenate(ub)),
        integrality=integrality,
        bounds=Bounds(0, 1),
        options=options,
    )
    if res.x is None or (not integral and res.status != 0):
        # an LP stopped early is no upper bound
        raise RuntimeError(f"placement {'MILP' if integral else 'LP'} failed: {res.message}")
    x = res.x[:n_x].reshape(n_s, n_i) > 0.5
    value = float(-res.fun)
    return Placement(
        [np.flatnonzero(x[s]) for s in range(n_s)],
        value,
        time.perf_counter() - t0,
        "milp" if integral else "lp",
        bound=value if not integral else float(-getattr(res, "mip_dual_bound", res.fun)),
    )


ContentPlacement = Callable[
    [np.ndarray, Sequence[int], Sequence[Sequence[int]] | None, Delivery], Placement
]
"""``place(demand, capacity, neighbours, delivery) -> Placement``: which items each station
keeps given its (stations, items) demand counts and capacities in items."""

CONTENT_PLACEMENTS: Registry[ContentPlacement] = Registry("content placement")
"""Content placement policies by name: ``greedy`` (FemtoCaching, cooperative), ``lp``
(the LP relaxation: an upper bound on the latency saved), ``popularity`` (each station
its own most requested items, no cooperation)."""


@CONTENT_PLACEMENTS.register("greedy")
def _greedy(
    demand: np.ndarray,
    capacity: Sequence[int],
    neighbours: Sequence[Sequence[int]] | None,
    delivery: Delivery,
) -> Placement:
    return greedy_placement(demand, capacity, neighbours, delivery)


@CONTENT_PLACEMENTS.register("lp")
def _lp(
    demand: np.ndarray,
    capacity: Sequence[int],
    neighbours: Sequence[Sequence[int]] | None,
    delivery: Delivery,
) -> Placement:
    return lp_placement(demand, capacity, neighbours, delivery)


@CONTENT_PLACEMENTS.register("popularity")
def _popularity(
    demand: np.ndarray,
    capacity: Sequence[int],
    neighbours: Sequence[Sequence[int]] | None,
    delivery: Delivery,
) -> Placement:
    return popularity_placement(demand, capacity)


def zipf_demand(
    stations: int,
    items: int,
    alpha: float,
    requests: int,
    locality: float = 0.3,
    seed: int | np.random.Generator = 0,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per-station request traces: a shared Zipf(``alpha``) popularity mixed with local taste.

    Station ``s`` draws from ``(1 - locality) * global + locality * local_s``
    where ``local_s`` is the same Zipf law over a station-specific permutation
    of the items. Returns the demand matrix (counts) and each station's trace.
    """
    if stations < 1 or items < 1 or requests < 1:
        raise ConfigError(
            f"stations, items and requests must be >= 1, got {stations}, {items}, {requests}"
        )
    if not 0 <= locality <= 1:
        raise ConfigError(f"locality must be in [0, 1], got {locality}")
    # the demand matrix, each station's trace and the choice's temporaries (bytes)
    ensure_fits(
        8.0 * stations * (2 * items + 3 * requests) + 32.0 * items,
        f"caching placement: {stations} stations x {items} items x {requests} requests",
        "lower settings.caching.placement.items or requests",
    )
    rng = np.random.default_rng(seed)
    z = 1.0 / np.arange(1, items + 1) ** alpha
    z /= z.sum()
    glob = z[rng.permutation(items)]
    traces, demand = [], np.zeros((stations, items))
    for s in range(stations):
        p = (1 - locality) * glob + locality * z[rng.permutation(items)]
        t = rng.choice(items, size=requests, p=p / p.sum())
        traces.append(t)
        demand[s] = np.bincount(t, minlength=items)
    return demand, traces


@dataclass
class DeliveryReport:
    """How requests were served: hit ratios per tier, mean fetch latency, backhaul bytes."""

    requests: int
    local_hits: int
    neighbour_hits: int
    cloud_fetches: int
    mean_latency_ms: float
    backhaul_bytes: int

    def to_json(self) -> dict[str, Any]:
        n = max(1, self.requests)
        return {
            "requests": self.requests,
            "local_hit_ratio": round(self.local_hits / n, 4),
            "neighbour_hit_ratio": round(self.neighbour_hits / n, 4),
            "cloud_ratio": round(self.cloud_fetches / n, 4),
            "mean_latency_ms": round(self.mean_latency_ms, 3),
            "backhaul_bytes": self.backhaul_bytes,
        }


def evaluate_delivery(
    placement: Placement,
    traces: Sequence[np.ndarray],
    item_bytes: int,
    neighbours: Sequence[Sequence[int]] | None = None,
    delivery: Delivery = Delivery(),
) -> DeliveryReport:
    """Serve each station's trace from the placement; ``neighbours=None`` is single-BS delivery."""
    if not traces or sum(len(t) for t in traces) == 0:
        raise DataError("the request traces are empty; give at least one request")
    items = 1 + max(int(t.max()) for t in traces if len(t))
    items = max(items, *(int(c.max()) + 1 for c in placement.cached if len(c)))
    x = placement.matrix(items)
    local = nbh = cloud = 0
    for s, t in enumerate(traces):
        here = x[s, t]
        near = np.zeros(len(t), dtype=bool)
        if neighbours is not None and neighbours[s]:
            near = x[list(neighbours[s])][:, t].any(axis=0) & ~here
        local += int(here.sum())
        nbh += int(near.sum())
        cloud += int((~here & ~near).sum())
    n = local + nbh + cloud
    ms = (local * delivery.local_ms + nbh * delivery.neighbour_ms + cloud * delivery.cloud_ms) / n
    return DeliveryReport(n, local, nbh, cloud, ms, cloud * item_bytes)


def choose_models(
    sizes_mb: Sequence[float], rates: Sequence[float], load_ms: Sequence[float], memory_mb: float
) -> np.ndarray:
    """Which models an edge server keeps loaded: max ``sum rate * load_ms`` saved within memory.

    A 0/1 knapsack solved exactly with ``scipy.optimize.milp``; returns the
    indices of the models to keep loaded.
    """
    from scipy.optimize import Bounds, LinearConstraint, milp

    s = np.asarray(sizes_mb, dtype=np.float64)
    v = np.asarray(rates, dtype=np.float64) * np.asarray(load_ms, dtype=np.float64)
    if s.size == 0 or s.shape != v.shape:
        raise DataError("give one size, rate and load time per model (at least one model)")
    if memory_mb <= 0:
        raise ConfigError(f"edge server memory must be > 0 MB, got {memory_mb}")
    res = milp(
        -v,
        constraints=LinearConstraint(s[None, :], -np.inf, memory_mb),
        integrality=np.ones_like(s),
        bounds=Bounds(0, 1),
    )
    return np.flatnonzero(res.x > 0.5)


@dataclass
class TieredPlacement:
    """What each device (``devices``) and each station (``stations``) caches."""

    devices: Placement
    stations: Placement


def _check_devices(
    device_demand: np.ndarray, device_capacity: Sequence[int], device_station: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dd = np.asarray(device_demand, dtype=np.float64)
    if dd.ndim != 2 or dd.size == 0:
        raise DataError(
            f"device demand must be a non-empty (devices, items) matrix, got {dd.shape}"
        )
    if (dd < 0).any() or not np.isfinite(dd).all():
        raise DataError("device demand must be finite and >= 0")
    dcap = np.asarray(device_capacity, dtype=np.int64)
    at = np.asarray(device_station, dtype=np.int64)
    if dcap.shape != (dd.shape[0],) or at.shape != (dd.shape[0],):
        raise ConfigError(
            f"need one capacity and one station per device ({dd.shape[0]}), "
            f"got {dcap.shape} and {at.shape}"
        )
    if (dcap < 0).any():
        raise ConfigError(f"device cache capacities must be >= 0 items, got {dcap.tolist()}")
    return dd, dcap, at


def tiered_placement(
    device_demand: np.ndarray,
    device_capacity: Sequence[int],
    device_station: Sequence[int],
    station_capacity: Sequence[int],
    neighbours: Sequence[Sequence[int]] | None = None,
    delivery: Delivery = Delivery(),
) -> TieredPlacement:
    """Place items on devices, then on stations: a device's own cache is tried first.

    ``device_demand[d, i]`` counts device ``d``'s requests for item ``i``;
    ``device_station[d]`` is the station it is attached to. A device's cache
    serves only that device, so each keeps its own ``device_capacity[d]`` most
    requested items (optimal for that tier alone); the stations are then
    placed by :func:`greedy_placement` on the residual demand, the requests
    their devices do not serve themselves. Sequential, so the factor-2 bound
    holds for the station tier given the devices' choice, not for both tiers
    jointly. ``devices.value`` is the latency the device tier saves
    (``cloud_ms - device_ms`` per request), ``stations.value`` the rest (ms).
    """
    t0 = time.perf_counter()
    dd, dcap, at = _check_devices(device_demand, device_capacity, device_station)
    n_st = len(np.asarray(station_capacity))
    if ((at < 0) | (at >= n_st)).any():
        raise ConfigError(f"device stations must be in [0, {n_st}), got {at.tolist()}")
    cached = [np.sort(np.argsort(-dd[d], kind="stable")[: dcap[d]]) for d in range(dd.shape[0])]
    cached = [c[dd[d, c] > 0] for d, c in enumerate(cached)]
    residual = dd.copy()
    for d, c in enumerate(cached):
        residual[d, c] = 0.0
    saved = float((dd - residual).sum()) * (delivery.cloud_ms - delivery.device_ms)
    dev = Placement(cached, saved, time.perf_counter() - t0, "device-popularity")
    st_demand = np.zeros((n_st, dd.shape[1]))
    np.add.at(st_demand, at, residual)
    return TieredPlacement(dev, greedy_placement(st_demand, station_capacity, neighbours, delivery))


def evaluate_tiered_delivery(
    placement: TieredPlacement,
    device_traces: Sequence[np.ndarray],
    device_station: Sequence[int],
    item_bytes: int,
    neighbours: Sequence[Sequence[int]] | None = None,
    delivery: Delivery = Delivery(),
) -> tuple[int, DeliveryReport]:
    """Serve each device's trace: own cache, then its station, neighbours, cloud.

    Returns the number of requests the devices served themselves and the
    report over all requests (``local_hits`` counts the station tier;
    ``mean_latency_ms`` includes the device hits at ``device_ms``).
    """
    if len(device_traces) != len(device_station):
        raise ConfigError(
            f"need one trace per device ({len(device_station)}), got {len(device_traces)}"
        )
    own = 0
    per_station: list[list[np.ndarray]] = [[] for _ in placement.stations.cached]
    for d, t in enumerate(device_traces):
        t = np.asarray(t, dtype=np.int64)
        mine = np.isin(t, placement.devices.cached[d])
        own += int(mine.sum())
        per_station[int(device_station[d])].append(t[~mine])
    traces = [np.concatenate(ts) if ts else np.zeros(0, dtype=np.int64) for ts in per_station]
    total = own + sum(len(t) for t in traces)
    if total == 0:
        raise DataError("the request traces are empty; give at least one request")
    if sum(len(t) for t in traces) == 0:
        return own, DeliveryReport(total, 0, 0, 0, delivery.device_ms, 0)
    rest = evaluate_delivery(placement.stations, traces, item_bytes, neighbours, delivery)
    ms = (rest.mean_latency_ms * rest.requests + own * delivery.device_ms) / total
    report = DeliveryReport(
        total, rest.local_hits, rest.neighbour_hits, rest.cloud_fetches, ms, rest.backhaul_bytes
    )
    return own, report
