"""The simulator's verbs: ``simulate`` (a whole run) and ``Simulation`` (step by step).

``Simulation`` runs a compiled ``SimModel`` with either engine. With a policy
object (``decide(observation) -> action``) it runs to the end; without one, on
the fast engine, it pauses at every offloading decision so that an outside
caller (the Gymnasium environment, a notebook) chooses::

    sim = Simulation(build_model(scenario, settings, seed=3))
    obs = sim.next_decision()
    while obs is not None:
        sim.decide(my_policy(obs))          # an index into SLOTS: 0 local, 1 edge, 2 cloud
        obs = sim.next_decision()
    result = sim.result()
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Literal

import numpy as np

from edgeintel.errors import ConfigError
from edgeintel.sim.compiled import available as compiled_available
from edgeintel.sim.compiled import run_compiled
from edgeintel.sim.core import run_core
from edgeintel.sim.model import SimModel, build_model
from edgeintel.sim.policy import DecisionPolicy, Observation, PlannerPolicy
from edgeintel.sim.result import SimResult
from edgeintel.sim.settings import SimSettings
from edgeintel.sim.state import SimState

if TYPE_CHECKING:
    from edgeintel.scenario import Scenario

__all__ = ["ENGINES", "Simulation", "simulate"]

ENGINES = ("fast", "python", "simpy")
"""``fast``: the compiled kernel where it applies (``compiled.available``), else the Python
heap core; ``python``: the Python heap core; ``simpy``: the SimPy reference."""

Progress = Callable[[float], None]


class Simulation:
    """One run of ``model``. ``policy=None``: the planner's ``PlannerPolicy`` for ``run``; for
    ``next_decision`` / ``decide`` the caller decides (fast engine only)."""

    def __init__(
        self,
        model: SimModel,
        policy: DecisionPolicy | None = None,
        engine: Literal["fast", "python", "simpy"] | None = None,
    ) -> None:
        self.model = model
        self.engine = engine or model.settings.engine
        if self.engine not in ENGINES:
            raise ConfigError(
                f"unknown engine {self.engine!r}; expected one of: {', '.join(ENGINES)}"
            )
        if policy is not None and not callable(getattr(policy, "decide", None)):
            raise ConfigError(
                f"policy must have decide(observation) -> action, got {type(policy).__name__}; "
                "a seed goes to build_model(scenario, settings, seed) or Simulation.from_scenario"
            )
        self.policy = policy
        self.state: SimState | None = None
        self._gen: Generator[Observation, int, None] | None = None
        self._awaiting: Observation | None = None
        self._buffered: Observation | None = None
        self._last: Observation | None = None
        self._finished = False
        self._cpu0 = 0.0
        self._wall0 = 0.0
        self._result: SimResult | None = None

    @classmethod
    def from_scenario(
        cls,
        scenario: Scenario,
        settings: SimSettings | None = None,
        seed: int | None = None,
        policy: DecisionPolicy | None = None,
    ) -> Simulation:
        return cls(build_model(scenario, settings, seed), policy)

    # ----------------------------------------------------------------- whole run
    def run(self, progress: Progress | None = None) -> SimResult:
        """Run to the end with ``policy`` (default ``PlannerPolicy``) and return the result."""
        if self.state is not None:
            raise ConfigError("this simulation has already started; build a new one")
        self._start(self.policy or PlannerPolicy(self.model))
        assert self.state is not None
        if self.engine == "simpy":
            from edgeintel.sim.reference import run_reference

            run_reference(self.state, progress)
        else:
            # The core makes no reference cycles (records, lists and tuples freed by reference
            # counting), so the cyclic collector is paused while it runs: its full passes
            # over a large fleet's long-lived objects cost ~15 % of a 100,000-device run.
            was_enabled = gc.isenabled()
            gc.disable()
            try:
                for _ in self._core(progress):
                    raise AssertionError("the fast core yielded a decision while it has a policy")
            finally:
                if was_enabled:
                    gc.enable()
        self._finished = True
        return self.result()

    # ----------------------------------------------------------------- step by step
    def next_decision(self) -> Observation | None:
        """Advance to the next offloading decision and return what the policy would see, or
        ``None`` when the run is over. Call ``decide`` before the next call."""
        if self._awaiting is not None:
            raise ConfigError("call decide(action) for the pending decision first")
        if self._finished:
            return None
        if self.engine == "simpy":
            raise ConfigError("external decisions need the fast engine (engine: fast)")
        if self.state is None:
            self._start(self.policy)
            assert self._gen is not None
            try:
                self._buffered = next(self._gen)
            except StopIteration:
                self._finished = True
                return None
        self._awaiting, self._buffered = self._buffered, None
        if self._awaiting is None:
            self._finished = True
        return self._awaiting

    def decide(self, action: int) -> None:
        """The action for the pending decision: an index into ``SLOTS`` (0 local, 1 edge,
        2 cloud); an unreachable slot runs locally and is counted as invalid. The run then
        advances to the following decision (or its end)."""
        if self._awaiting is None:
            raise ConfigError("no pending decision: call next_decision() first")
        assert self._gen is not None
        self._last, self._awaiting = self._awaiting, None
        try:
            self._buffered = self._gen.send(action)
        except StopIteration:
            self._buffered = None
            self._finished = True

    @property
    def now_s(self) -> float:
        """Simulated time (s) of the last decided observation."""
        return 0.0 if self._last is None else self._last.t_s

    @property
    def records(self) -> dict[str, np.ndarray]:
        """The per-task record arrays so far (``result.RECORD_FIELDS``; ``done`` is -1 for
        tasks not finished yet), up to date at the pending decision."""
        if self.state is None:
            raise ConfigError("the simulation has not started: call next_decision() or run()")
        self.state.sync()
        st = self.state
        return {
            "t_arr": st.t_arr,
            "device": st.dev_of,
            "place": st.place,
            "done": st.done,
            "hit": st.hit,
            "energy": st.energy,
            "bs": st.bs,
            "attempts": st.attempts,
        }

    @property
    def finished(self) -> bool:
        return self._finished

    def result(self) -> SimResult:
        """The result (the run must be finished)."""
        if not self._finished or self.state is None:
            raise ConfigError("the simulation has not finished")
        if self._result is None:
            self._result = SimResult.from_state(
                self.state,
                self.engine,
                time.process_time() - self._cpu0,
                time.perf_counter() - self._wall0,
            )
            self._result.extra["kernel"] = self.kernel
        return self._result

    def _start(self, policy: DecisionPolicy | None) -> None:
        self._cpu0, self._wall0 = time.process_time(), time.perf_counter()
        self.state = SimState(self.model, policy)
        if self.engine != "simpy":
            self._gen = self._core()

    @property
    def kernel(self) -> str:
        """Which loop runs: ``compiled`` (numba kernel), ``python`` (heap core) or ``simpy``."""
        if self.engine == "simpy":
            return "simpy"
        return "compiled" if self.engine == "fast" and compiled_available(self.model) else "python"

    def _core(self, progress: Progress | None = None) -> Generator[Observation, int, None]:
        assert self.state is not None
        if self.kernel == "compiled":
            return run_compiled(self.state, progress)
        return run_core(self.state, progress)


def simulate(
    scenario: Scenario,
    settings: SimSettings | None = None,
    progress: Progress | None = None,
    seed: int | None = None,
    policy: DecisionPolicy | None = None,
) -> SimResult:
    """Simulate ``scenario``'s fleet (``settings`` default: ``scenario.settings.sim``); the
    CPU time counted in the result includes compiling the model."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    model = build_model(scenario, settings, seed)
    sim = Simulation(model, policy)
    res = sim.run(progress)
    res.cpu_s = time.process_time() - cpu0
    res.wall_s = time.perf_counter() - wall0
    res.extra["build_s"] = round(res.wall_s - (sim.result().wall_s), 4)
    return res
