"""Online rollout of a model version to a running fleet: canary, stages, automatic rollback.

A ``Rollout`` moves one model from its ``stable`` version to a ``candidate`` through
``stages`` (shares of devices, e.g. 0.1 -> 0.5 -> 1.0). A device belongs to the current
stage when its bucket (sha256 of rollout id and device name, in [0, 1)) is below the
stage's share, so the assignment is deterministic, needs no device list, and a device
joining mid-rollout gets its place on first contact; a device in a stage stays in every
later one. The rollout id is ``model:stable->candidate``, salted (``#k``, the first ``k``
that works) when the node already knows devices and the plain id would put none or all of
them in the canary (a small fleet). Devices pull their assignment with each delivery of
results (the ``assign`` field of the ``/v1/results`` answer) and report the version each
result was computed with, so both versions are judged on the same period's traffic.

The rule, per stage: at looks ``j = 1 .. looks``, when both versions have at least
``j x min_results`` results in the stage, every guard of ``runtime.guards.GUARDS`` is
tested at level ``alpha / looks`` (Bonferroni over the looks, so repeated looking keeps the
stage's false-rollback rate per guard at most ``alpha``). A tripped guard rolls the
model back at once (the reason is the guard's sentence); ``looks`` quiet looks promote
it to the next stage; the last stage (share 1) completes the rollout. A stage that does
not reach its looks within ``stage_timeout_s`` is rolled back as inconclusive, and a
device that refuses the candidate's artifact (bad signature) rolls it back too.
``RolloutManager`` is the server's part holding the rollouts and each device's version.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, field_validator

from edgeintel.errors import ConfigError
from edgeintel.runtime.guards import GUARDS, GuardLimits, VersionSample, evaluate_guards
from edgeintel.schema import Strict

__all__ = [
    "DeviceVersion",
    "Rollout",
    "RolloutManager",
    "RolloutSettings",
    "RolloutState",
    "bucket",
]

_VERSION = re.compile(r"^[0-9]{1,18}$")


class RolloutSettings(Strict):
    """A rollout of ``model`` version ``version`` (a folder of the server's repository).

    ``stages``: increasing shares of devices ending at 1 (the first is the canary).
    ``min_results``: results of each version per look; ``looks`` per stage; ``alpha``:
    the one-sided level of a stage's guard tests (split over its looks). Margins (how much
    worse the canary may be): ``max_error_rate_increase`` and ``max_metric_drop``
    absolute, ``max_latency_p95_ratio`` a factor. ``guards``: which of ``GUARDS``
    (default all). ``stage_timeout_s``: seconds a stage may take to reach its looks.
    """

    model: Annotated[str, Field(min_length=1, max_length=200)]
    version: str
    stages: tuple[Annotated[float, Field(gt=0, le=1)], ...] = (0.1, 0.5, 1.0)
    min_results: Annotated[int, Field(ge=1, le=10**7)] = 50
    looks: Annotated[int, Field(ge=1, le=100)] = 2
    alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.05
    max_error_rate_increase: Annotated[float, Field(ge=0, le=1)] = 0.01
    max_metric_drop: Annotated[float, Field(ge=0, le=1)] = 0.02
    max_latency_p95_ratio: Annotated[float, Field(ge=1, le=1000)] = 1.5
    guards: list[str] | None = None
    stage_timeout_s: Annotated[float, Field(gt=0, le=86400)] = 300.0

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        if not _VERSION.match(v) or int(v) < 1:
            raise ValueError(f"expected a version number >= 1 (a repository folder), got {v!r}")
        return v

    @field_validator("stages")
    @classmethod
    def _stages(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v or any(b <= a for a, b in itertools.pairwise(v)) or v[-1] != 1.0:
            raise ValueError(
                f"expected increasing shares ending at 1, e.g. [0.1, 0.5, 1], got {list(v)}"
            )
        return v

    @field_validator("guards")
    @classmethod
    def _guards(cls, v: list[str] | None) -> list[str] | None:
        for name in v or []:
            GUARDS.check(name)
        return v

    @property
    def limits(self) -> GuardLimits:
        return GuardLimits(
            self.max_error_rate_increase, self.max_metric_drop, self.max_latency_p95_ratio
        )


class RolloutState(StrEnum):
    RUNNING = "running"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"


def bucket(rollout_id: str, device: str) -> float:
    """A device's place in [0, 1) for one rollout (sha256; the same on every node)."""
    h = hashlib.sha256(f"{rollout_id}\0{device}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2.0**64


@dataclass
class DeviceVersion:
    """What a device last reported: the version of each model it runs (from its results),
    when (server clock, s), and versions it refused with the reason."""

    versions: dict[str, str] = field(default_factory=dict)
    seen_s: float = 0.0
    refused: dict[str, str] = field(default_factory=dict)


class Rollout:
    """One model's move from ``stable`` to ``settings.version`` (see the module doc)."""

    def __init__(
        self,
        settings: RolloutSettings,
        stable: str,
        clock: Callable[[], float] = time.monotonic,
        rollout_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.stable = stable
        self.candidate = settings.version
        self.id = rollout_id or f"{settings.model}:{stable}->{settings.version}"
        self._clock = clock
        self.started_s = clock()
        self.state = RolloutState.RUNNING
        self.stage = 0
        self.stage_started_s = self.started_s
        self.look = 0
        self.reason = ""
        self.timeline: list[dict[str, Any]] = []
        self.samples: dict[str, VersionSample] = {}
        self._seen: set[tuple[str, str]] = set()
        self._event("stage", share=settings.stages[0])
        if settings.stages[0] >= 1.0:  # no canary asked for: every device at once
            self.state = RolloutState.PROMOTED
            self._event("promote", share=1.0)

    def _event(self, event: str, **fields: Any) -> None:
        t = round(self._clock() - self.started_s, 3)
        self.timeline.append({"t_s": t, "event": event, "stage": self.stage, **fields})

    @property
    def share(self) -> float:
        """The share of devices on the candidate now."""
        if self.state is RolloutState.PROMOTED:
            return 1.0
        if self.state is RolloutState.ROLLED_BACK:
            return 0.0
        return self.settings.stages[self.stage]

    def assign(self, device: str) -> str:
        """The version ``device`` should run now."""
        if self.state is RolloutState.PROMOTED:
            return self.candidate
        if self.state is RolloutState.ROLLED_BACK:
            return self.stable
        return self.candidate if bucket(self.id, device) < self.share else self.stable

    def observe(self, device: str, key: str, payload: dict[str, Any]) -> None:
        """Count one result (once per key) toward its version's sample in this stage."""
        if self.state is not RolloutState.RUNNING:
            return
        version = str(payload.get("version", ""))
        if version not in (self.stable, self.candidate) or (device, key) in self._seen:
            return
        self._seen.add((device, key))
        self.samples.setdefault(version, VersionSample()).add(payload)

    def refuse(self, device: str, version: str, reason: str) -> None:
        """A device refused the candidate's artifact: roll back."""
        if self.state is RolloutState.RUNNING and version == self.candidate:
            self._rollback(f"device {device} refused version {version}: {reason}")

    def _rollback(self, reason: str, **fields: Any) -> None:
        self.state, self.reason = RolloutState.ROLLED_BACK, reason
        self._event("rollback", reason=reason, **fields)

    def step(self) -> None:
        """Take the looks that are due (and the stage timeout); call after new results."""
        s = self.settings
        while self.state is RolloutState.RUNNING:
            c = self.samples.get(self.candidate, VersionSample())
            st = self.samples.get(self.stable, VersionSample())
            if min(c.n, st.n) < (self.look + 1) * s.min_results:
                if self._clock() - self.stage_started_s > s.stage_timeout_s:
                    self._rollback(
                        f"inconclusive: {c.n} candidate and {st.n} stable results in "
                        f"stage {self.stage} within {s.stage_timeout_s} s "
                        f"(a look needs {s.min_results} of each)"
                    )
                return
            self.look += 1
            results = evaluate_guards(c, st, s.limits, s.alpha / s.looks, s.guards)
            figures = {"candidate": c.to_json(), "stable": st.to_json()}
            tripped = [r for r in results if r.tripped]
            self._event("look", look=self.look, guards=[r.to_json() for r in results], **figures)
            if tripped:
                self._rollback("; ".join(r.reason for r in tripped), **figures)
                return
            if self.look >= s.looks:
                self._next_stage()

    def _next_stage(self) -> None:
        self.stage += 1
        self.look = 0
        self.samples = {}
        self._seen.clear()
        self.stage_started_s = self._clock()
        share = self.settings.stages[self.stage]
        if share >= 1.0:
            self.state = RolloutState.PROMOTED
            self._event("promote", share=1.0)
        else:
            self._event("stage", share=share)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.settings.model,
            "stable": self.stable,
            "candidate": self.candidate,
            "state": str(self.state),
            "stage": self.stage,
            "share": self.share,
            "reason": self.reason,
            "settings": self.settings.model_dump(mode="json"),
            "samples": {v: smp.to_json() for v, smp in self.samples.items()},
            "timeline": list(self.timeline),
        }


def _rollout_id(settings: RolloutSettings, stable: str, known: list[str]) -> str:
    """``model:stable->candidate``, salted until the canary holds some but not all of the
    ``known`` devices (when that is possible: two or more devices, a canary share below 1)."""
    base = f"{settings.model}:{stable}->{settings.version}"
    share = settings.stages[0]
    if len(known) < 2 or share >= 1.0:
        return base
    for k in range(256):
        rid = base if k == 0 else f"{base}#{k}"
        inside = sum(bucket(rid, d) < share for d in known)
        if 0 < inside < len(known):
            return rid
    return base


class RolloutManager:
    """The server's rollouts (the last one per model) and the versions its devices report.

    ``served(model)`` lists the versions the server can hand out; ``pin(model, version)``
    makes ``version`` the model's default (what unassigned requests get)."""

    def __init__(
        self,
        served: Callable[[str], list[str]],
        pin: Callable[[str, str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._served = served
        self._pin = pin
        self._clock = clock
        self.rollouts: dict[str, Rollout] = {}
        self.history: list[dict[str, Any]] = []
        self.devices: dict[str, DeviceVersion] = {}

    def start(self, settings: RolloutSettings, stable: str) -> Rollout:
        """Begin a rollout from ``stable`` (the model's current default); ``ConfigError``
        when one is running for the model or a version is not served."""
        model = settings.model
        current = self.rollouts.get(model)
        if current is not None and current.state is RolloutState.RUNNING:
            raise ConfigError(f"model {model!r}: rollout {current.id} is still running")
        served = self._served(model)
        for what, v in (("version", settings.version), ("stable version", stable)):
            if v not in served:
                raise ConfigError(
                    f"{what} {v} of {model!r} is not served (served: {', '.join(served) or 'none'})"
                )
        if settings.version == stable:
            raise ConfigError(f"version {stable} of {model!r} is already the stable version")
        self._pin(model, stable)
        if current is not None:
            self.history.append(current.to_json())
        r = self.rollouts[model] = Rollout(
            settings, stable, self._clock, _rollout_id(settings, stable, sorted(self.devices))
        )
        if r.state is RolloutState.PROMOTED:
            self._pin(model, r.candidate)
        return r

    def assignment(self, device: str) -> dict[str, str]:
        """Model -> version ``device`` should run (models with a rollout only)."""
        return {m: r.assign(device) for m, r in self.rollouts.items()}

    def version_for(self, device: str | None, model: str) -> str | None:
        """The version a device's unversioned request for ``model`` is served with."""
        r = self.rollouts.get(model)
        return None if r is None or device is None else r.assign(device)

    def ingest(
        self, device: str, records: list[dict[str, Any]], status: dict[str, Any] | None = None
    ) -> None:
        """Results (and the device's status: ``model``, ``version``, ``refused``) into the
        rollouts; promotes or rolls back as the rule says."""
        dv = self.devices.setdefault(device, DeviceVersion())
        dv.seen_s = self._clock()
        if isinstance(status, dict):
            model, version = status.get("model"), status.get("version")
            if isinstance(model, str) and isinstance(version, str):
                dv.versions[model] = version
            refused = status.get("refused")
            if isinstance(model, str) and isinstance(refused, dict):
                for v, why in refused.items():
                    dv.refused[str(v)] = str(why)[:300]
                    if model in self.rollouts:
                        self.rollouts[model].refuse(device, str(v), str(why)[:300])
        for rec in records:
            payload = rec.get("payload")
            if not isinstance(payload, dict):
                continue
            model = payload.get("model")
            r = self.rollouts.get(model) if isinstance(model, str) else None
            if r is not None:
                r.observe(device, str(rec.get("key")), payload)
        self.step()

    def step(self) -> None:
        for model, r in self.rollouts.items():
            before = r.state
            r.step()
            if before is RolloutState.RUNNING and r.state is RolloutState.PROMOTED:
                self._pin(model, r.candidate)

    def pending(self, model: str) -> list[str]:
        """Devices seen that do not yet report the version assigned to them."""
        r = self.rollouts.get(model)
        if r is None:
            return []
        return sorted(
            d for d, dv in self.devices.items() if dv.versions.get(model, "") != r.assign(d)
        )

    def to_json(self) -> dict[str, Any]:
        self.step()
        return {
            "rollouts": {
                m: {**r.to_json(), "pending": self.pending(m)} for m, r in self.rollouts.items()
            },
            "history": list(self.history),
            "devices": {
                d: {"versions": dict(dv.versions), "seen_s": round(dv.seen_s, 3),
                    "refused": dict(dv.refused)}
                for d, dv in sorted(self.devices.items())
            },
        }  # fmt: skip
