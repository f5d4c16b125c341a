"""Fleet placement: one option per device (local, D2E, D2C, D2D, hybrid split) for all at once.

A ``FleetProblem`` lists, for every device, its options with their latency
components and energy *before* queueing, the load each puts on servers and
devices, and each device's deadline and request rate. Servers queue: a
server with ``workers`` workers, background utilisation ``background`` and a
nominal service time (the whole model on it) is an M/M/c queue; its
utilisation is rounded *up* to a grid of levels (``levels``, the top one being
``max_utilization``) and the queueing delay is M/M/c's at that level. Devices
do not queue, but a device's own compute plus the work it takes for
neighbours (D2D) must stay under ``max_utilization``.

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
from edgeintel.offloading.costs import Breakdown, erlang_c
from edgeintel.registry import Registry

__all__ = [
    "PLACEMENTS",
    "FleetPlan",
    "FleetProblem",
    "Option",
    "Resource",
    "evaluate_assignment",
    "place",
    "queue_wait_ms",
]


@dataclass(frozen=True)
class Resource:
    """A server (``edge``/``cloud``) or a device that can take work (``device``)."""

    name: str
    kind: str
    workers: int = 1
    background: float = 0.0
    service_ms: float = 1.0


@dataclass(frozen=True)
class Option:
    """One way to serve a device's requests, costed without queueing.

    ``tier``: local, d2e, d2c, d2d or hybrid; ``target``: the server or helper
    device; ``server_ms``: work per request at ``target``; ``device_load_ms``:
    compute per request on each device resource (its own, and a D2D helper's);
    ``value``: objective units; ``device_nodes``: layers run on the device.
    """

    label: str
    tier: str
    target: str | None
    base: Breakdown
    energy_j: float
    value: float
    server_ms: float = 0.0
    device_load_ms: tuple[tuple[str, float], ...] = ()
    device_nodes: int = 0
    total_nodes: int = 0
    mask: np.ndarray | None = field(default=None, compare=False, repr=False)


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
        if r is not None and r.kind != "device" and opt.server_ms > 0:
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
        if r.kind == "device":
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
        w = waits.get(opt.target, 0.0) if opt.target else 0.0
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
    servers = [n for n, r in problem.resources.items() if r.kind != "device"]
    devres = [n for n, r in problem.resources.items() if r.kind == "device"]
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
                        # q_d >= W_k * (x_do + z_sk - 1)
                        add(
                            [
                                (q0 + d, 1.0),
                                (int(offsets[d]) + o, -waits[k]),
                                (z0 + s_i * L + k, -waits[k]),
                            ],
                            -waits[k],
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
def greedy_fleet(problem: FleetProblem, passes: int = 8) -> list[int]:
    """Best-response passes: each device in turn takes the option that lowers the fleet's
    total cost most (deadline misses and overload priced out); stops when nothing moves."""
    n_dev = len(problem.devices)
    choice = [int(np.argmin([o.value for o in opts])) for opts in problem.options]
    # start from the cheapest option that needs no server, when there is one
    for d, opts in enumerate(problem.options):
        local = [i for i, o in enumerate(opts) if o.target is None]
        if local:
            choice[d] = local[0]

    def total(ch: list[int]) -> float:
        plan = evaluate_assignment(problem, ch)
        pen = 1e6 * len(plan.misses) + (0 if plan.feasible or plan.misses else 1e6)
        return float(np.sum(np.where(np.isfinite(plan.value), plan.value, 1e9))) + pen

    cur = total(choice)
    order = sorted(range(n_dev), key=lambda d: -problem.rates_hz[d])
    for _ in range(passes):
        moved = False
        for d in order:
            best_o, best_v = choice[d], cur
            for o in range(len(problem.options[d])):
                if o == choice[d]:
                    continue
                trial = choice.copy()
                trial[d] = o
                v = total(trial)
                if v < best_v - 1e-12:
                    best_o, best_v = o, v
            if best_o != choice[d]:
                choice[d], cur, moved = best_o, best_v, True
        if not moved:
            break
    return choice


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
