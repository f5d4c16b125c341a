"""Churn in a deployed run (``settings.runtime.deploy.churn``): devices join, leave and
reboot while the fleet runs.

``ChurnDriver`` plays the schedule beside the agents:

- a device that ``join``s has its agent started only at its time, for the rest of the run;
- one that ``leave``s stops sensing, and its forwarder still delivers what its store holds;
- one that ``reboot``s is stopped at once (``DeviceAgent.abort``: no drain) and its store is
  closed. ``down_s`` later a new agent (``rebooted``) opens the same store and resumes at
  its next stream index with the version its updater recorded; the undelivered results
  wait in the store and are delivered by the new agent.

``record`` lists each event with what the device held and ran before and after; it
becomes ``results.runtime.churn``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from edgeintel.pipeline.stages.runtime_results import Deployment

__all__ = ["ChurnDriver", "rebooted"]


def rebooted(old: Any, store: Any) -> Any:
    """A new ``DeviceAgent`` for ``old``'s device after a reboot, on its re-opened
    ``store``: the same stream, links, plan, filter and token; version 1's model, then the
    version its updater recorded (``ModelUpdater.current``); counters carried over."""
    from edgeintel.runtime.agent import DeviceAgent

    if old.drift is not None:
        old.drift.restart()  # the monitor's window is in memory: it starts over
    new = DeviceAgent(
        old.name, old.stream, old.initial.session, store, old.transport, model=old.model,
        plan=old.plan, filter=old.filter, token=old.token, settings=old.settings,
        head_session=old.head_session, tail_input=old.tail_input, server_node=old.server_node,
        task=old.task, version=old.initial.version, updater=old.updater,
        predictor=old.initial.predictor, drift=old.drift, peers=old.peers,
    )  # fmt: skip
    new.stats, new.versions = old.stats, old.versions  # the device's figures over the run
    return new


class ChurnDriver:
    """Plays ``events`` (``ChurnEvent``s) on ``run``'s agents (see the module doc).

    ``threads``: device -> the thread running its agent (the driver adds joiners and
    rebooted agents); ``reopen``: device -> a function that opens its store again;
    ``limit``: stream inputs per device; ``duration_s`` / ``drain_s``: the run's."""

    def __init__(
        self,
        events: list[Any],
        run: Deployment,
        threads: dict[str, threading.Thread],
        reopen: dict[str, Callable[[], Any]],
        limit: int,
        duration_s: float,
        drain_s: float,
    ) -> None:
        self.events = sorted(events, key=lambda e: e.at_s)
        self.run = run
        self.threads = threads
        self.reopen = reopen
        self.limit = limit
        self.duration_s = duration_s
        self.drain_s = drain_s
        self.record: list[dict[str, Any]] = []
        self.joiners = {str(e.device) for e in self.events if str(e.action) == "join"}
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []  # one per event: a reboot waits down_s
        self._lock = threading.Lock()  # run.agents and the record change from workers
        self._t0 = time.monotonic()
        self.thread = threading.Thread(target=self._play, name="churn", daemon=True)

    @property
    def done(self) -> bool:
        return not self.thread.is_alive() and not any(w.is_alive() for w in self._workers)

    def start(self) -> None:
        self._t0 = time.monotonic()
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(60)
        for w in self._workers:
            w.join(60)

    def _now(self) -> float:
        return time.monotonic() - self._t0

    def _index(self, device: str) -> int:
        return next(k for k, (a, _, _) in enumerate(self.run.agents) if a.name == device)

    def _start(self, agent: Any) -> None:
        left = max(0.0, self.duration_s - self._now())
        t = threading.Thread(target=agent.run, args=(self.limit, left, self.drain_s),
                             name=f"agent-{agent.name}", daemon=True)  # fmt: skip
        self.threads[agent.name] = t
        t.start()

    def _play(self) -> None:
        for ev in self.events:
            if self._stop.wait(max(0.0, ev.at_s - self._now())):
                return
            w = threading.Thread(target=self._worker, args=(ev,), daemon=True)
            self._workers.append(w)
            w.start()

    def _worker(self, ev: Any) -> None:
        try:
            row = self._apply(ev)
        except Exception as exc:  # recorded; the run goes on
            row = {"at_s": ev.at_s, "device": ev.device, "action": str(ev.action),
                   "error": f"{type(exc).__name__}: {exc}"}  # fmt: skip
        with self._lock:
            self.record.append(row)
            self.record.sort(key=lambda r: (r["at_s"], r["device"]))

    def _apply(self, ev: Any) -> dict[str, Any]:
        k = self._index(ev.device)
        agent, store, transport = self.run.agents[k]
        row: dict[str, Any] = {"at_s": ev.at_s, "device": ev.device, "action": str(ev.action),
                               "done_s": None}  # fmt: skip
        if str(ev.action) == "join":
            self._start(agent)
        elif str(ev.action) == "leave":
            agent.halt()
            row["produced"] = store.counters["appended"]
        else:  # reboot
            agent.abort()
            self.threads[agent.name].join(30)
            row.update(version_before=agent.active.version, undelivered_at_stop=store.size,
                       index_at_stop=store.next_index)  # fmt: skip
            store.close()
            if self._stop.wait(ev.down_s):
                return row
            store = self.reopen[ev.device]()
            new = rebooted(agent, store)
            with self._lock:
                self.run.agents[k] = (new, store, transport)
            if ev.device in self.run.peers:  # a D2D helper answers on its new agent
                self.run.peers[ev.device].agent = new
            self._start(new)
            row.update(down_s=ev.down_s, resumed_at_index=store.next_index,
                       version_after=new.active.version)  # fmt: skip
        row["done_s"] = round(self._now(), 3)
        return row
