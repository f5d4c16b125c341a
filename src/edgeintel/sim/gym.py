"""A Gymnasium environment over the simulator, and a learned offloading policy.

``OffloadEnv`` steps the fast engine's external-decision API
(``Simulation.next_decision`` / ``decide``) with ``decisions="task"``: every
task that is not filtered out is one step.

* **action** (``Discrete(3)``): where the task runs, an index into ``SLOTS`` —
  0 local, 1 the device's current station's edge server, 2 the cloud. An
  unreachable slot runs locally (the simulator counts it in ``invalid_actions``).
* **observation** (``Box(0, float32 max, (14,), float32)``): ``Observation.features()`` in
  the order of ``FEATURES`` — the device's link (bandwidth, RTT, loss), battery
  fraction, the edge server's and the cloud's queues, and each slot's latency (ms)
  and device energy (mJ) as the offloading cost model prices it now, plus whether
  edge and cloud are reachable.
* **reward**: minus the *realised* cost of the tasks whose fate became known since
  the previous step: ``latency_weight x latency (s) + energy_weight x device energy
  (J)`` per completed task, ``drop_penalty`` per dropped one (queue full, outage,
  flat battery). Every task is counted exactly once, so an episode's return is
  minus the run's total cost.
* the episode **terminates** at the simulated duration (the run drains; the final
  step's reward includes every task still in flight).

``LinearOffloadPolicy`` is a policy learned in the environment: it scores each
available option by ``a x latency_ms + b x energy_mJ + bias[slot]`` and takes the
lowest. Because it looks only at costed ``Option``s, the same object answers the
simulator (``decide(observation) -> slot``, the ``DecisionPolicy`` protocol) and the
offloading decision path (``decide(options, unreachable) -> Option``, the protocol
of ``offloading.adapt.AdaptivePolicy``, which ``offloading.scenario_plan`` calls per
device at each link change). ``train_linear_policy`` fits it with the cross-entropy method on a few
short episodes (common random numbers: every candidate sees the same seeds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, SupportsFloat

import numpy as np

from edgeintel.errors import ConfigError
from edgeintel.extras import require
from edgeintel.offloading.placement import Option
from edgeintel.sim.api import Simulation
from edgeintel.sim.model import build_model
from edgeintel.sim.policy import ACTIONS, FEATURES, Observation
from edgeintel.sim.settings import SimSettings
from edgeintel.sim.state import PENDING, SKIPPED

if TYPE_CHECKING:
    from edgeintel.scenario import Scenario

gym = require("gymnasium", "the simulator's Gymnasium environment")
spaces = gym.spaces

__all__ = ["LinearOffloadPolicy", "OffloadEnv", "episode_return", "train_linear_policy"]

_TIER_SLOT = {"local": 0, "d2e": 1, "d2c": 2, "d2d": 1, "hybrid": 1}
"""An option's slot by tier (D2D and hybrid splits price like an edge offload here)."""
_MS, _MJ = FEATURES.index("local_ms"), FEATURES.index("local_mj")  # then edge, cloud
_EDGE_OK, _CLOUD_OK = FEATURES.index("edge_available"), FEATURES.index("cloud_available")


class OffloadEnv(gym.Env):  # type: ignore[misc,name-defined]
    """Per-task offloading decisions in a simulated fleet (see the module docstring).

    ``settings`` default: the scenario's ``settings.sim``; decisions are per task and the
    engine is the fast one whatever they say. ``reset(seed=s)`` compiles the model with
    seed ``s`` (same seed, same episode); ``reset()`` draws the seed from the env's RNG.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 - gymnasium's attribute

    def __init__(
        self,
        scenario: Scenario,
        settings: SimSettings | None = None,
        latency_weight: float = 1.0,
        energy_weight: float = 1.0,
        drop_penalty: float = 1.0,
    ) -> None:
        for name, v in [("latency_weight", latency_weight), ("energy_weight", energy_weight),
                        ("drop_penalty", drop_penalty)]:  # fmt: skip
            if not (isinstance(v, int | float) and v >= 0 and np.isfinite(v)):
                raise ConfigError(f"OffloadEnv: {name} must be a finite number >= 0, got {v!r}")
        base = settings or scenario.settings.sim or SimSettings()
        self.scenario = scenario
        self.settings = base.model_copy(update={"decisions": "task", "engine": "fast"})
        self.latency_weight = float(latency_weight)
        self.energy_weight = float(energy_weight)
        self.drop_penalty = float(drop_penalty)
        big = np.finfo(np.float32).max  # features are >= 0 and unbounded above (ms, mJ, queues)
        self.observation_space = spaces.Box(0.0, big, (len(FEATURES),), np.float32)
        self.action_space = spaces.Discrete(len(ACTIONS))
        self.sim: Simulation | None = None
        self._obs: Observation | None = None
        self._cursor = 0
        self.episode_cost = 0.0

    # ----------------------------------------------------------------- gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        run_seed = int(seed) if seed is not None else int(self.np_random.integers(2**32))
        self.sim = Simulation(build_model(self.scenario, self.settings, seed=run_seed))
        self._cursor = 0
        self.episode_cost = 0.0
        obs = self.sim.next_decision()
        if obs is None:
            raise ConfigError(
                "OffloadEnv: the episode has no decision (no task arrives, or all are filtered); "
                "raise settings.sim.duration_s or task_rate_hz"
            )
        self._obs = obs
        return obs.features(), {"t_s": obs.t_s, "device": obs.device, "seed": run_seed}

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        sim = self.sim
        if sim is None or self._obs is None:
            raise ConfigError("OffloadEnv: call reset() before step()")
        sim.decide(int(action))
        obs = sim.next_decision()
        if obs is None:
            cost = self._settle(None)
            last = self._obs
            self._obs = None
            res = sim.result()
            info = {"t_s": last.t_s, "summary": res.summary()}
            return last.features(), -cost, True, False, info
        self._obs = obs
        cost = self._settle(round(obs.t_s * 1e9))
        return obs.features(), -cost, False, False, {"t_s": obs.t_s, "device": obs.device}

    # ----------------------------------------------------------------- rewards
    def _settle(self, now_ns: int | None) -> float:
        """Cost of the tasks, in arrival order, whose fate is known (all when ``now_ns`` is
        None); stops at the first task still pending or in flight."""
        assert self.sim is not None and self.sim.state is not None
        st = self.sim.state
        st.sync()  # the fast core buffers records; write them into the arrays now
        place, done, t_arr, energy = st.place, st.done, st.t_arr, st.energy
        n = place.shape[0]
        i = self._cursor
        cost = 0.0
        lw, ew, drop = self.latency_weight * 1e-9, self.energy_weight * 1e-6, self.drop_penalty
        while i < n:
            p = int(place[i])
            if now_ns is not None and (p == PENDING or int(t_arr[i]) > now_ns):
                break
            if p >= 0:
                d = int(done[i])
                if d < 0:
                    if now_ns is not None:
                        break  # in flight
                    cost += drop  # never finished within the drained run
                else:
                    cost += lw * (d - int(t_arr[i])) + ew * int(energy[i])
            elif p != SKIPPED:
                cost += drop
            i += 1
        self._cursor = i
        self.episode_cost += cost
        return cost


# --------------------------------------------------------------------------- learned policy


@dataclass
class LinearOffloadPolicy:
    """Lowest ``latency_coef x latency_ms + energy_coef x energy_mJ + bias[slot]`` wins.

    Works on costed ``Option``s only, so one object serves the simulator and the
    runtime's offloading path (see the module docstring).
    """

    latency_coef: float = 1.0
    energy_coef: float = 0.0
    bias: tuple[float, float, float] = (0.0, 0.0, 0.0)
    decisions: int = field(default=0, compare=False)

    @classmethod
    def from_vector(cls, theta: Sequence[float] | np.ndarray) -> LinearOffloadPolicy:
        a, b, *bias = (float(x) for x in theta)
        if len(bias) != 3:
            raise ConfigError(f"LinearOffloadPolicy: expected 5 parameters, got {len(theta)}")
        return cls(a, b, (bias[0], bias[1], bias[2]))

    def to_vector(self) -> np.ndarray:
        return np.array([self.latency_coef, self.energy_coef, *self.bias])

    def score(self, option: Option) -> float:
        """Lower is better (latency in ms and device energy in mJ of the option's cost)."""
        slot = _TIER_SLOT.get(option.tier, 1)
        return (
            self.latency_coef * option.base.latency_ms
            + self.energy_coef * option.energy_j * 1e3
            + self.bias[slot]
        )

    def _best(self, options: Sequence[Option]) -> Option:
        self.decisions += 1
        return min(options, key=lambda o: (self.score(o), o.label))

    def decide(
        self,
        situation: Observation | Sequence[Option],
        unreachable: frozenset[str] = frozenset(),
    ) -> Any:
        """Simulator: ``decide(observation) -> slot`` (0 local, 1 edge, 2 cloud).
        Offloading path: ``decide(options, unreachable) -> Option`` like ``AdaptivePolicy``."""
        if isinstance(situation, Observation):
            usable = [o for o in situation.options if o is not None]
            return _TIER_SLOT[self._best(usable).tier] if usable else 0
        usable = [o for o in situation if o.target is None or o.target not in unreachable]
        if not usable:
            raise ConfigError("no usable option: include the local option")
        return self._best(usable)

    def __call__(self, features: np.ndarray) -> int:
        """Act from the environment's feature vector alone (``FEATURES`` order)."""
        f = features
        avail = (True, f[_EDGE_OK] > 0, f[_CLOUD_OK] > 0)
        scores = [
            self.latency_coef * f[_MS + k] + self.energy_coef * f[_MJ + k] + self.bias[k]
            for k in range(3)
        ]
        return int(min((s, k) for k, s in enumerate(scores) if avail[k])[1])


def episode_return(env: OffloadEnv, policy: Any, seed: int) -> float:
    """Total reward of one episode with ``policy`` (an ``Observation -> slot`` decider)."""
    env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        assert env._obs is not None
        _, r, done, _, _ = env.step(policy.decide(env._obs))
        total += float(r)
    return total


def train_linear_policy(
    env: OffloadEnv,
    episodes: Sequence[int] = (0, 1, 2),
    iterations: int = 8,
    population: int = 16,
    elite: int = 4,
    seed: int = 0,
) -> tuple[LinearOffloadPolicy, list[float]]:
    """Cross-entropy method over the 5 parameters: each candidate's score is its mean return
    on ``episodes`` (the same seeds for every candidate); returns the best policy seen and
    the best mean return per iteration."""
    if elite < 1 or elite > population:
        raise ConfigError(f"train_linear_policy: elite must be in [1, population], got {elite}")
    rng = np.random.default_rng(seed)
    mean = np.array([1.0, 0.0, 0.0, 0.0, 0.0])
    std = np.array([1.0, 1.0, 20.0, 20.0, 20.0])
    best: tuple[float, np.ndarray] = (-np.inf, mean.copy())
    history = []
    for _ in range(iterations):
        cands = mean + std * rng.standard_normal((population, mean.size))
        cands[0] = best[1]  # keep the incumbent
        scores = np.array([
            np.mean([episode_return(env, LinearOffloadPolicy.from_vector(c), s) for s in episodes])
            for c in cands
        ])  # fmt: skip
        order = np.argsort(-scores, kind="stable")
        if scores[order[0]] > best[0]:
            best = (float(scores[order[0]]), cands[order[0]].copy())
        top = cands[order[:elite]]
        mean, std = top.mean(axis=0), top.std(axis=0) + 1e-3
        history.append(best[0])
    return LinearOffloadPolicy.from_vector(best[1]), history
