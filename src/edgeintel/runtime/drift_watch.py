"""Drift watching on a device agent, and the node's view of its fleet's drift.

``DriftWatch`` feeds each input the agent computes, with the model's output, to a
``monitoring.DriftMonitor`` fitted on the device's reference inputs (label free) and keeps
the last state; ``report()`` is the drift block of the agent's delivery status, so drift
reports travel to the serving node with the results. After a version swap the device's
next inputs become the new reference (the new version was trained for them) and the
monitor is fitted on them again.

``DriftBook`` is the node's side: the last report of each device, grouped by device group
(the name before the last ``-``: ``phone-3`` is in ``phone``), and the groups where at
least ``trigger_share`` of the devices seen report drift now, the signal that starts a
retrain (``triggered``; each group once until its drift clears).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeintel.monitoring import DriftConfig, DriftMonitor

__all__ = ["DriftBook", "DriftWatch", "device_group", "output_probs"]


def output_probs(logits: np.ndarray) -> np.ndarray:
    """What the monitor's output detectors watch: class probabilities (a softmax of a
    vector of logits), or the output itself (a value, an anomaly score)."""
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim == 1 and z.size > 1:
        e = np.exp(z - z.max())
        return np.asarray(e / e.sum())
    return z.ravel()


class DriftWatch:
    """One device's drift monitor. ``run(x)`` gives the model output on a batch of inputs
    (the reference's outputs are computed with it)."""

    def __init__(
        self, cfg: DriftConfig, reference: np.ndarray, run: Callable[[np.ndarray], np.ndarray]
    ) -> None:
        self.cfg = cfg
        self.size = len(reference)
        self.monitor = self._fit(np.asarray(reference), run)
        self._rebase: list[np.ndarray] | None = None  # inputs of the next reference
        self._run = run
        self.rebased = 0  # references taken anew (after version swaps)
        self.inputs = 0
        self.drift = False
        self.fired: tuple[str, ...] = ()
        self.alarms = 0
        self.first_alarm: int | None = None

    def _fit(self, reference: np.ndarray, run: Callable[[np.ndarray], np.ndarray]) -> DriftMonitor:
        outs = np.stack([output_probs(o) for o in run(reference)])
        return DriftMonitor(self.cfg, reference, outs)

    def update(self, x: np.ndarray, logits: np.ndarray) -> bool:
        """Take one input and the model's output on it; True when this input raised an alarm
        (a firing test after a quiet one, as the monitor counts them)."""
        self.inputs += 1
        if self._rebase is not None:  # a new version: its first inputs are the new normal
            self._rebase.append(np.asarray(x))
            if len(self._rebase) >= self.size:
                self.monitor = self._fit(np.stack(self._rebase), self._run)
                self._rebase = None
                self.rebased += 1
            return False
        s = self.monitor.update(x, output_probs(logits))
        raised = False
        if s.tested:
            raised = s.drift and not self.drift
            self.drift, self.fired = s.drift, s.fired
        if raised:
            self.alarms += 1
            if self.first_alarm is None:
                self.first_alarm = self.inputs
        return raised

    def restart(self, run: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        """A new model version (``run``: its outputs on a batch). The version was trained
        for what the device sees now, so the next ``size`` inputs become the new reference
        (no test meanwhile) and the monitor is fitted on them again; without ``run`` only
        the window restarts. Alarms so far are kept."""
        self.monitor.reset()
        self.drift, self.fired = False, ()
        if run is not None:
            self._run, self._rebase = run, []

    def report(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "drift": self.drift,
            "fired": list(self.fired),
            "alarms": self.alarms,
            "first_alarm": self.first_alarm,
        }


def device_group(device: str) -> str:
    """A device's group: its name before the last ``-`` (``phone-3`` -> ``phone``)."""
    return device.rsplit("-", 1)[0] if "-" in device else device


@dataclass
class DriftBook:
    """The drift reports of a node's devices, per group."""

    trigger_share: float = 0.5
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    triggered: list[dict[str, Any]] = field(default_factory=list)
    _open: set[str] = field(default_factory=set)

    def ingest(self, device: str, report: Any, t_s: float) -> str | None:
        """Keep a device's report; the group's name when this report makes it cross the
        trigger share (a retrain is due), else None."""
        if not isinstance(report, dict):
            return None
        self.reports[device] = {
            "drift": bool(report.get("drift")),
            "alarms": int(report.get("alarms") or 0),
            "inputs": int(report.get("inputs") or 0),
            "fired": [str(f) for f in report.get("fired") or []][:8],
        }
        group = device_group(device)
        g = self.groups().get(group)
        if g is None:
            return None
        if g["drifting"] / g["devices"] >= self.trigger_share and group not in self._open:
            self._open.add(group)
            self.triggered.append({"t_s": round(t_s, 3), "group": group, **g})
            return group
        if g["drifting"] == 0:
            self._open.discard(group)
        return None

    def groups(self) -> dict[str, dict[str, Any]]:
        """Per group: devices reporting, how many drift now, alarms raised in all."""
        out: dict[str, dict[str, Any]] = {}
        for device, r in sorted(self.reports.items()):
            g = out.setdefault(
                device_group(device), {"devices": 0, "drifting": 0, "alarms": 0, "alarmed": []}
            )
            g["devices"] += 1
            g["drifting"] += r["drift"]
            g["alarms"] += r["alarms"]
            if r["alarms"]:
                g["alarmed"].append(device)
        return out

    def to_json(self) -> dict[str, Any]:
        return {"groups": self.groups(), "triggered": list(self.triggered)}
