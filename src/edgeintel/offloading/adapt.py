"""Re-planning when links or servers change, with hysteresis; local fallback.

``AdaptivePolicy`` is a plain object with no clock: the runtime calls
``decide`` on every request with the options costed under the link state it
observes now (the simulator with simulated observations), so the plan follows
a bandwidth change within one request. A device keeps its current option
unless the best option is better by more than ``hysteresis`` (a fraction), so
it does not flap between near-equal options; when the current option's target
is gone (link down, server unreachable) it moves at once, and local execution
is always there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from edgeintel.errors import ConfigError
from edgeintel.offloading.placement import Option

__all__ = ["AdaptivePolicy", "Switch"]


@dataclass(frozen=True)
class Switch:
    """A change of plan: request index, from and to option labels, and why."""

    step: int
    old: str | None
    new: str
    reason: str


@dataclass
class AdaptivePolicy:
    """Per-device option choice over a stream of observations (``hysteresis`` in [0, 1))."""

    hysteresis: float = 0.1
    current: str | None = None
    switches: list[Switch] = field(default_factory=list)
    _step: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.hysteresis < 1:
            raise ConfigError(f"hysteresis must be in [0, 1), got {self.hysteresis}")

    def decide(
        self, options: Sequence[Option], unreachable: frozenset[str] = frozenset()
    ) -> Option:
        """The option for this request among ``options`` (targets in ``unreachable`` dropped)."""
        usable = [o for o in options if o.target is None or o.target not in unreachable]
        if not usable:
            raise ConfigError("no usable option: include the local option")
        best = min(usable, key=lambda o: (o.value, o.label))
        by_label = {o.label: o for o in usable}
        cur = by_label.get(self.current) if self.current is not None else None
        step = self._step
        self._step += 1
        if cur is None:
            reason = "start" if self.current is None else f"{self.current} unavailable"
            self._switch(step, best, reason)
            return best
        if best.label != cur.label and best.value < cur.value * (1 - self.hysteresis):
            self._switch(step, best, f"{best.value:.4g} < {cur.value:.4g} by > {self.hysteresis:g}")
            return best
        return cur

    def _switch(self, step: int, new: Option, reason: str) -> None:
        self.switches.append(Switch(step, self.current, new.label, reason))
        self.current = new.label
