"""Offloading decisions in the simulator: the observation, the action, and the policy protocol.

At each decision (a device's first task, a handover, a link-trace step, or every
task with ``decisions="task"``) the engine builds an ``Observation``: the
device's three options in slot order (``SLOTS``: local, edge, cloud; ``None``
when unreachable), each costed by the offloading cost model under the links and
queues of that instant. A policy maps it to an action, an index into ``SLOTS``.

``PlannerPolicy`` is the runtime's own policy: ``offloading.adapt.AdaptivePolicy``
per device (hysteresis, local fallback), started from the fleet plan of the
registered placement policy. A learned policy (e.g. trained in the Gymnasium
environment) implements the same one-method protocol and is used unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from edgeintel.errors import ConfigError
from edgeintel.offloading.adapt import AdaptivePolicy
from edgeintel.offloading.placement import Option
from edgeintel.sim.model import SLOTS

if TYPE_CHECKING:
    from edgeintel.sim.model import SimModel

__all__ = [
    "ACTIONS",
    "FEATURES",
    "DecisionPolicy",
    "FixedPolicy",
    "Observation",
    "PlannerPolicy",
]

ACTIONS = SLOTS[:3]
"""The Gymnasium environment's actions (local, edge, cloud); ``d2d`` is decided by policies
that read ``Observation.options[3]``."""
FEATURES = (
    "bandwidth_mbps",
    "rtt_ms",
    "loss",
    "battery_fraction",
    "edge_queue",
    "cloud_queue",
    "local_ms",
    "edge_ms",
    "cloud_ms",
    "local_mj",
    "edge_mj",
    "cloud_mj",
    "edge_available",
    "cloud_available",
)
"""Names of ``Observation.features()``; an unavailable option's ms and mJ are 0."""


@dataclass(slots=True)
class Observation:
    """What a policy sees at one decision (times in s, bandwidth Mbit/s, RTT ms).

    ``options[slot]`` is the costed ``Option`` of local / edge / cloud / d2d or ``None``;
    ``queues`` the requests waiting at the device's edge server and at the cloud.
    """

    t_s: float
    device: int
    group: str
    attach: str
    options: tuple[Option | None, ...]
    bandwidth_mbps: float
    rtt_ms: float
    loss: float
    battery_fraction: float
    queues: tuple[int, int]
    reason: str

    @property
    def available(self) -> tuple[bool, bool, bool]:
        return (True, self.options[1] is not None, self.options[2] is not None)

    def features(self) -> np.ndarray:
        """A float32 vector in the order of ``FEATURES`` (for learned policies)."""
        first = self.options[: len(ACTIONS)]  # the Gymnasium actions' options
        lat = [0.0 if o is None else o.base.latency_ms for o in first]
        mj = [0.0 if o is None else o.energy_j * 1e3 for o in first]
        return np.array(
            [
                self.bandwidth_mbps,
                self.rtt_ms,
                self.loss,
                self.battery_fraction,
                float(self.queues[0]),
                float(self.queues[1]),
                *lat,
                *mj,
                float(self.options[1] is not None),
                float(self.options[2] is not None),
            ],
            dtype=np.float32,
        )


@runtime_checkable
class DecisionPolicy(Protocol):
    """Anything with ``decide(observation) -> action`` (an index into ``SLOTS``)."""

    def decide(self, observation: Observation) -> int: ...


_SLOT_OF_TIER = {"local": 0, "d2e": 1, "d2c": 2, "d2d": 3}


class PlannerPolicy:
    """``AdaptivePolicy`` per device, started from the placement policy's plan per device group.

    On a handover the plan follows the device: an edge placement moves to the new
    station, so hysteresis keeps it there unless something is better. A device never
    takes a slot the plan found over capacity for its group (``SimModel.initial_blocked``:
    e.g. a cell uplink the whole group would saturate), which a device's own costs,
    blind to the shared uplink, cannot see.
    """

    def __init__(self, model: SimModel) -> None:
        self.model = model
        self.hysteresis = model.hysteresis
        self._policies: dict[int, AdaptivePolicy] = {}

    def _policy(self, device: int, attach: str) -> AdaptivePolicy:
        pol = self._policies.get(device)
        if pol is None:
            m = self.model
            slot = m.initial_slot[int(m.dev_group[device])]
            helper = int(m.helper[device]) if m.helper.size else -1
            d2d = f"d2d:{m.device_name(helper)}" if helper >= 0 else "local"
            label = ("local", f"d2e:{attach}", f"d2c:{m.cloud_name}", d2d)[slot]
            pol = AdaptivePolicy(self.hysteresis, current=label)
            self._policies[device] = pol
        return pol

    def decide(self, observation: Observation) -> int:
        pol = self._policy(observation.device, observation.attach)
        if observation.reason == "handover" and (pol.current or "").startswith("d2e:"):
            pol.current = f"d2e:{observation.attach}"  # the plan follows the device
        m = self.model
        blocked = (
            m.initial_blocked[int(m.dev_group[observation.device])] if m.initial_blocked else ()
        )
        usable = [
            o for s, o in enumerate(observation.options) if o is not None and s not in blocked
        ]
        return _SLOT_OF_TIER[pol.decide(usable).tier]

    def switches(self) -> int:
        """Plan changes after each device's first decision."""
        return sum(max(0, len(p.switches) - 1) for p in self._policies.values())


class FixedPolicy:
    """Always the same slot (``local``, ``edge`` or ``cloud``), local when it is unreachable:
    the all-local / all-edge / all-cloud baselines."""

    def __init__(self, slot: str) -> None:
        if slot not in SLOTS:
            raise ConfigError(f"unknown slot {slot!r}; expected one of: {', '.join(SLOTS)}")
        self.slot = SLOTS.index(slot)

    def decide(self, observation: Observation) -> int:
        return self.slot if observation.options[self.slot] is not None else 0
