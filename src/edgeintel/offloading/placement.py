"""Fleet placement: one option per device (local, D2E, D2C, D2D, hybrid split) for all at once.

A ``FleetProblem`` lists, for every device, its options with their latency
components and energy *before* queueing, the load each puts on servers and
devices, and each device's deadline and request rate. Servers queue: a
server with ``workers`` workers, background utilisation ``background`` and a
nominal service time (the whole model on it) is an M/M/c queue; its
utilisation is rounded *up* to a grid of levels (``levels``, the top one being
``max_utilization``) and the queueing delay is M/M/c's at that level. Devices
do not queue, but a device's own compute plus the work it takes for
neighbours (D2D) must stay under ``max_utilization``; so must a shared
``link`` (e.g. a cell uplink: its load per request is the transfer time),
which is a capacity like a device's, with no queueing delay in the objective.

Policies (``PLACEMENTS``): ``milp`` (exact for this model with
``scipy.optimize.milp``: binaries per device option and per server level,
linearised waits, deadlines as constraints), ``greedy`` (best-response passes
with incremental bookkeeping, for large fleets), ``brute_force`` (tiny fleets,
the reference in tests), and ``auto`` (milp up to ``exact_max_devices``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edgeintel.errors import ConfigError
from edgeintel.offloading.costs import erlang_c
from edgeintel.offloading.options import Option
from edgeintel.registry import Registry

__all__ = [
    "CAPACITY_KINDS",
    "PLACEMENTS",
    "FleetPlan",
    "FleetProblem",
    "Option",
    "Resource",
    "evaluate_assignment",
    "place",
    "queue_wait_ms",
]


CAPACITY_KINDS = frozenset({"device", "link"})
"""Resource kinds that do not queue: their load only has to stay under ``max_utilization``."""


@dataclass(frozen=True)
class Resource:
    """A server (``edge``/``cloud``), a device that can take work (``device``) or a shared
    ``link`` (``service_ms``: one request's transfer time); devices and links are
    capacities only (``CAPACITY_KINDS``), loaded through ``Option.device_load_ms``."""

    name: str
    kind: str
    workers: int = 1
    background: float = 0.0
    service_ms: float = 1.0


@dataclass(frozen=True)
class FleetProblem:
    """Options per device, rates (Hz), deadlines (ms, inf = none), servers and the wait price."""

    devices: list[str]
    options: list[list[Option]]
    rates_hz: np.ndarray
    deadlines_ms: np.ndarray
    wait_weight: np.ndarray  # objective units per ms of queueing, per device
    idle_w: np.ndarray  # device idle power while waiting (J/s)
    resources: dict[str, Resource]
    max_utilization: float = 0.9
    levels: np.ndarray = field(default_factory=lambda: np.linspace(0.05, 0.9, 18))

    def __post_init__(self) -> None:
        if not self.devices or len(self.options) != len(self.devices):
            raise ConfigError("a fleet problem needs one option list per device")
        for d, opts in zip(self.devices, self.options, strict=True):
            if not opts:
                raise ConfigError(f"device {d!r} has no option")

    def level_wait_ms(self, r: str) -> np.ndarray:
        """Queueing delay (ms) at each utilisation level of server ``r``."""
        return np.array([queue_wait_ms(self.resources[r], lv) for lv in self.levels])


def queue_wait_ms(res: Resource, utilization: float) -> float:
    """M/M/c mean wait (ms) at ``utilization`` of ``res`` (inf when >= 1)."""
    if utilization <= 0:
        return 0.0
    if utilization >= 1:
        return math.inf
    c = res.workers
    a = utilization * c
    return erlang_c(c, a) * res.service_ms / (c - a)


@dataclass
class FleetPlan:
    """The chosen option per device and what it costs (queueing included)."""

    choice: list[int]
    labels: list[str]
    latency_ms: np.ndarray
    energy_j: np.ndarray
    value: np.ndarray
    wait_ms: np.ndarray
    utilization: dict[str, float]
    feasible: bool
    misses: list[str]
    policy: str = ""
    solve_ms: float = 0.0

    @property
    def objective(self) -> float:
        """Mean objective per device (ms, J or weighted)."""
        return float(np.mean(self.value))


def _loads(problem: FleetProblem, choice: list[int]) -> dict[str, float]:
    util = {n: r.background for n, r in problem.resources.items()}
    for d, o in enumerate(choice):
        opt = problem.options[d][o]
        lam = problem.rates_hz[d] / 1000.0  # requests per ms
        r = problem.resources[opt.target] if opt.target is not None else None
        if r is not None and r.kind not in CAPACITY_KINDS and opt.server_ms > 0:
            util[r.name] += lam * opt.server_ms / r.workers
        for name, ms in opt.device_load_ms:
            util[name] += lam * ms / problem.resources[name].workers
    return util


def _rounded_level(problem: FleetProblem, u: float) -> float | None:
    """The smallest level >= u (None when above the top level)."""
    idx = np.searchsorted(problem.levels, u - 1e-12)
    return None if idx >= len(problem.levels) else float(problem.levels[idx])


def evaluate_assignment(
    problem: FleetProblem, choice: list[int], policy: str = "", strict: bool = True
) -> FleetPlan:
    """Cost of ``choice`` (option index per device) under the fleet's queueing model.

    ``strict``: a server or device above ``max_utilization`` makes the plan
    infeasible (waits inf); otherwise waits use the exact M/M/c utilisation
    (for reporting baselines such as all-edge).
    """
    util = _loads(problem, choice)
    over = [n for n, u in util.items() if u > problem.max_utilization + 1e-9]
    waits: dict[str, float] = {}
    for n, r in problem.resources.items():
        if r.kind in CAPACITY_KINDS:
            continue
        if strict:
            lv = _rounded_level(problem, util[n])
            waits[n] = math.inf if lv is None else queue_wait_ms(r, lv)
        else:
            waits[n] = queue_wait_ms(r, util[n])
    n_dev = len(problem.devices)
    lat, en, val, wt = (np.zeros(n_dev) for _ in range(4))
    misses = []
    for d, o in enumerate(choice):
        opt = problem.options[d][o]
        w = (waits.get(opt.target, 0.0) if opt.target else 0.0) * opt.remote_fraction
        wt[d] = w
        lat[d] = opt.base.latency_ms + w
        en[d] = opt.energy_j + problem.idle_w[d] * w / 1000.0
        val[d] = opt.value + problem.wait_weight[d] * w
        if lat[d] > problem.deadlines_ms[d] + 1e-9:
            misses.append(problem.devices[d])
    feasible = not misses and not (strict and over)
    return FleetPlan(
        list(choice),
        [problem.options[d][o].label for d, o in enumerate(choice)],
        lat,
        en,
        val,
        wt,
        {k: round(v, 6) for k, v in util.items()},
        feasible,
        misses,
        policy,
    )


PlacementPolicy = Callable[[FleetProblem], list[int]]
PLACEMENTS: Registry[PlacementPolicy] = Registry("placement policy")


@PLACEMENTS.register("brute_force")
def brute_force_fleet(problem: FleetProblem) -> list[int]:
    """Every combination of options (tiny fleets): the reference for ``milp``."""
    sizes = [len(o) for o in problem.options]
    if math.prod(sizes) > 200_000:
        raise ConfigError(f"brute_force placement is for tiny fleets, got {math.prod(sizes)} plans")
    best, best_c = math.inf, None
    for c in itertools.product(*[range(s) for s in sizes]):
        plan = evaluate_assignment(problem, list(c))
        if plan.feasible and plan.objective < best - 1e-12:
            best, best_c = plan.objective, list(c)
    if best_c is None:
        raise _infeasible(problem)
    return best_c


@PLACEMENTS.register("milp")
def milp_fleet(problem: FleetProblem) -> list[int]:
    """Exact placement with ``scipy.optimize.milp`` (HiGHS) for the bracketed M/M/c model."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_matrix

    n_dev = len(problem.devices)
    offsets = np.cumsum([0] + [len(o) for o in problem.options])
    nx = int(offsets[-1])
    servers = [n for n, r in problem.resources.items() if r.kind not in CAPACITY_KINDS]
    devres = [n for n, r in problem.resources.items() if r.kind in CAPACITY_KINDS]
    L = len(problem.levels)
    z0 = nx
    q0 = nx + len(servers) * L
    nv = q0 + n_dev
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    lb: list[float] = []
    ub: list[float] = []

    def add(entries: list[tuple[int, float]], lo: float, hi: float) -> None:
        r = len(lb)
        for c, v in entries:
            rows.append(r)
            cols.append(c)
            vals.append(v)
        lb.append(lo)
        ub.append(hi)

    c = np.zeros(nv)
    upper = np.ones(nv)
    big = 0.0
    for d, opts in enumerate(problem.options):
        add([(int(offsets[d]) + o, 1.0) for o in range(len(opts))], 1.0, 1.0)
        for o, opt in enumerate(opts):
            c[offsets[d] + o] = opt.value
            if opt.base.latency_ms > problem.deadlines_ms[d] + 1e-9:
                upper[offsets[d] + o] = 0.0
        c[q0 + d] = problem.wait_weight[d]
    for s_i, s in enumerate(servers):
        res = problem.resources[s]
        waits = problem.level_wait_ms(s)
        big = max(big, float(np.max(waits[np.isfinite(waits)], initial=0.0)))
        add([(z0 + s_i * L + k, 1.0) for k in range(L)], 1.0, 1.0)
        load = []
        for d, opts in enumerate(problem.options):
            for o, opt in enumerate(opts):
                if opt.target == s and opt.server_ms > 0:
                    load.append(
                        (
                            int(offsets[d]) + o,
                            problem.rates_hz[d] / 1000.0 * opt.server_ms / res.workers,
                        )
                    )
                    for k in range(L):
                        # q_d >= f W_k (x_do + z_sk - 1), f = the share that reaches s
                        wk = opt.remote_fraction * waits[k]
                        add(
                            [
                                (q0 + d, 1.0),
                                (int(offsets[d]) + o, -wk),
                                (z0 + s_i * L + k, -wk),
                            ],
                            -wk,
                            np.inf,
                        )
        add(
            load + [(z0 + s_i * L + k, -float(problem.levels[k])) for k in range(L)],
            -np.inf,
            -res.background,
        )
    for name in devres:
        res = problem.resources[name]
        entries = []
        for d, opts in enumerate(problem.options):
            for o, opt in enumerate(opts):
                for rn, ms in opt.device_load_ms:
                    if rn == name:
                        entries.append(
                            (int(offsets[d]) + o, problem.rates_hz[d] / 1000.0 * ms / res.workers)
                        )
        if entries:
            add(entries, -np.inf, problem.max_utilization - res.background)
    for d, opts in enumerate(problem.options):
        if np.isfinite(problem.deadlines_ms[d]):
            add(
                [(int(offsets[d]) + o, opt.base.latency_ms) for o, opt in enumerate(opts)]
                + [(q0 + d, 1.0)],
                -np.inf,
                float(problem.deadlines_ms[d]),
            )
    upper[q0:] = max(big, 1.0)
    A = coo_matrix((vals, (rows, cols)), shape=(len(lb), nv)).tocsr()
    integrality = np.ones(nv)
    integrality[q0:] = 0
    res_ = milp(
        c,
        constraints=LinearConstraint(A, np.array(lb), np.array(ub)),
        integrality=integrality,
        bounds=Bounds(np.zeros(nv), upper),
        options={"disp": False, "mip_rel_gap": 1e-9},
    )
    if res_.x is None:
        raise _infeasible(problem)
    x = res_.x[:nx]
    return [int(np.argmax(x[offsets[d] : offsets[d + 1]])) for d in range(n_dev)]


@PLACEMENTS.register("greedy")
def greedy_fleet(problem: FleetProblem, passes: int = 4) -> list[int]:
    """Regret-ordered construction, then best-response passes, with incremental bookkeeping.

    Every resource's utilisation, every server's total wait weight (the sum of
    ``wait_weight x remote_fraction`` of the devices queueing there) and the
    tightest deadline slack among them (a heap) are kept up to date, so costing
    a move does not re-evaluate the fleet: its change of the total objective is
    the device's own change plus, on each server it touches, the change of that
    server's (level-rounded M/M/c) wait times the weight of the devices already
    there. A move is taken only if no server or device goes above
    ``max_utilization`` and no device queueing on the server it joins misses its
    deadline. Devices are placed in order of regret (how much better their best
    option is than their first, local one: O(n log n)), each on the option that
    raises the total least; then passes over the fleet move a device whenever
    that lowers the total, until nothing moves (at most ``passes``). Time:
    O(n log n + passes x n x options x log n).
    """
    import gc

    # the greedy allocates many small tuples; cyclic collections would rescan the
    # problem's objects (options, masks) each time: about half the run at 10,000 devices
    gc_was = gc.isenabled()
    gc.disable()
    try:
        return _greedy(problem, passes)
    finally:
        if gc_was:
            gc.enable()


def _greedy(problem: FleetProblem, passes: int) -> list[int]:
    """The greedy's bookkeeping (see ``greedy_fleet``)."""
    import heapq
    from bisect import bisect_left

    names = list(problem.resources)
    rid = {n: i for i, n in enumerate(names)}
    res = [problem.resources[n] for n in names]
    is_server = [r.kind not in CAPACITY_KINDS for r in res]
    levels = [float(v) for v in problem.levels]
    top = problem.max_utilization + 1e-9
    level_w = [
        [queue_wait_ms(r, lv) for lv in levels] if is_server[i] else [] for i, r in enumerate(res)
    ]

    def wait(s: int, u: float) -> float:
        k = bisect_left(levels, u - 1e-12)
        return math.inf if k >= len(levels) else level_w[s][k]

    n_dev = len(problem.devices)
    # per device and option: value, base latency, remote fraction, queue server, loads
    table: list[list[tuple[float, float, float, int, tuple[tuple[int, float], ...]]]] = []
    for d, opts in enumerate(problem.options):
        lam = float(problem.rates_hz[d]) / 1000.0
        rows = []
        for opt in opts:
            q = rid[opt.target] if opt.target is not None and is_server[rid[opt.target]] else -1
            loads: list[tuple[int, float]] = []
            if q >= 0 and opt.server_ms > 0:
                loads.append((q, lam * opt.server_ms / res[q].workers))
            for rn, ms in opt.device_load_ms:
                loads.append((rid[rn], lam * ms / res[rid[rn]].workers))
            rows.append((opt.value, opt.base.latency_ms, opt.remote_fraction, q, tuple(loads)))
        table.append(rows)
    weight = [float(w) for w in problem.wait_weight]
    deadline = [float(x) for x in problem.deadlines_ms]
    any_deadline = bool(np.isfinite(problem.deadlines_ms).any())
    util = [r.background for r in res]
    heavy = [0.0] * len(res)  # sum of weight x remote fraction of the devices queueing there
    slack: list[list[tuple[float, int, int]]] = [[] for _ in res]  # (wait slack ms, d, option)
    choice = [-1] * n_dev

    def tightest(s: int, skip: int) -> float:
        """Smallest wait slack among the devices queueing at ``s`` other than ``skip``."""
        h = slack[s]
        while h and (choice[h[0][1]] != h[0][2]):
            heapq.heappop(h)  # stale entries (the device moved)
        if not h:
            return math.inf
        if h[0][1] != skip:
            return h[0][0]
        first = heapq.heappop(h)
        while h and (choice[h[0][1]] != h[0][2]):
            heapq.heappop(h)
        out = h[0][0] if h else math.inf
        heapq.heappush(h, first)
        return out

    def delta(d: int, b: int) -> float:
        """Change of the fleet's total if device ``d`` takes option ``b`` (inf: not allowed)."""
        a = choice[d]
        vb, lb, fb, qb, loads_b = table[d][b]
        if a >= 0:
            va, _, fa, qa, loads_a = table[d][a]
        else:
            va, fa, qa, loads_a = 0.0, 0.0, -1, ()
        for r, x in loads_b:
            net = x
            for r2, x2 in loads_a:
                if r2 == r:
                    net -= x2
            if net > 0 and util[r] + net > top:
                return math.inf
        if qb < 0 and lb > deadline[d] + 1e-9:
            return math.inf
        total = vb - va
        for s in (qa, qb) if qa != qb else (qb,):
            if s < 0:
                continue
            net = 0.0
            for r, x in loads_b:
                if r == s:
                    net += x
            for r, x in loads_a:
                if r == s:
                    net -= x
            old = wait(s, util[s])
            new = wait(s, util[s] + net) if net else old
            if new == math.inf:
                return math.inf
            others = heavy[s] - (weight[d] * fa if s == qa else 0.0)
            total += others * (new - old)
            if s == qb:
                if lb + fb * new > deadline[d] + 1e-9 or (
                    any_deadline and new > tightest(s, d) + 1e-9
                ):
                    return math.inf
                total += weight[d] * fb * new
            if s == qa:
                total -= weight[d] * fa * old
        return total

    def move(d: int, b: int) -> None:
        a = choice[d]
        if a >= 0:
            _, _, fa, qa, loads_a = table[d][a]
            for r, x in loads_a:
                util[r] -= x
            if qa >= 0:
                heavy[qa] -= weight[d] * fa
        _, lb, fb, qb, loads_b = table[d][b]
        for r, x in loads_b:
            util[r] += x
        choice[d] = b
        if qb >= 0:
            heavy[qb] += weight[d] * fb
            room = (deadline[d] - lb) / fb if fb > 0 else math.inf
            heapq.heappush(slack[qb], (room, d, b))

    _greedy_passes(table, choice, delta, move, passes)
    return choice


def _greedy_passes(
    table: list[list[tuple[float, float, float, int, tuple[tuple[int, float], ...]]]],
    choice: list[int],
    delta: Callable[[int, int], float],
    move: Callable[[int, int], None],
    passes: int,
) -> None:
    """The greedy's construction (by regret, option 0 = local) and improvement passes."""
    values = [[row[0] for row in rows] for rows in table]
    regret = [vals[0] - min(vals) for vals in values]
    n_dev = len(table)
    order = sorted(range(n_dev), key=lambda d: (-regret[d], d))
    for d in order:
        costs = [delta(d, b) for b in range(len(table[d]))]
        best = min(range(len(costs)), key=costs.__getitem__)
        move(d, best if costs[best] < math.inf else int(np.argmin(values[d])))
    # a device on its cheapest option that queues nowhere never gains by moving (its own
    # value cannot fall, and load added to a server never lowers anyone's wait): skipped
    active = [
        d for d in order if table[d][choice[d]][3] >= 0 or values[d][choice[d]] > min(values[d])
    ]
    for _ in range(passes):
        moved = False
        for d in active:
            a = choice[d]
            best, best_v = a, -1e-9
            for b in range(len(table[d])):
                if b != a:
                    v = delta(d, b)
                    if v < best_v:
                        best, best_v = b, v
            if best != a:
                move(d, best)
                moved = True
        if not moved:
            break


def _infeasible(problem: FleetProblem) -> ConfigError:
    """Name the devices that miss their deadline even with their fastest option alone."""
    worst = []
    for d, opts in enumerate(problem.options):
        best = min(o.base.latency_ms for o in opts)
        if best > problem.deadlines_ms[d]:
            worst.append(
                f"{problem.devices[d]} (best {best:.3g} ms > {problem.deadlines_ms[d]:g} ms)"
            )
    if worst:
        shown = ", ".join(worst[:5]) + (f" and {len(worst) - 5} more" if len(worst) > 5 else "")
        return ConfigError(f"deadline cannot be met: {shown}")
    if all(math.isinf(float(x)) for x in problem.deadlines_ms):  # no deadline is set
        return ConfigError(
            "no placement fits the fleet within server capacity (no deadline is set: the "
            "edge and cloud workers cannot serve every device's requests); add servers or "
            "workers, or lower request_rate_hz"
        )
    return ConfigError(
        "no placement meets every deadline within server capacity; raise the deadline, "
        "add servers or lower request_rate_hz"
    )


def place(problem: FleetProblem, policy: str = "auto", exact_max_devices: int = 12) -> FleetPlan:
    """Place the fleet with ``policy`` (``auto``: milp up to ``exact_max_devices``, else greedy).

    Raises a ``ConfigError`` naming the devices that miss when no feasible plan exists.
    """
    import time

    name = policy
    if policy == "auto":
        name = "milp" if len(problem.devices) <= exact_max_devices else "greedy"
    fn = PLACEMENTS.get(name)
    t0 = time.perf_counter()
    choice = fn(problem)
    ms = (time.perf_counter() - t0) * 1e3
    plan = evaluate_assignment(problem, choice, policy=name)
    plan.solve_ms = ms
    if not plan.feasible:
        raise _infeasible(problem)
    return plan
