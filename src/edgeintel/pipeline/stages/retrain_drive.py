"""A deployed run's retrain loop (``settings.runtime.deploy.lifecycle.retrain``).

With ``on_drift``, every agent of ``edgeintel run`` watches its inputs and outputs with a
``runtime.DriftWatch`` (reference: its first inputs) and reports its drift state to its
edge server with each delivery, where the node's ``DriftBook`` decides when a group is
due for a retrain. ``RetrainDriver`` runs beside the agents and polls each edge server's
``GET /v1/rollout``. For every group the node declares due, it runs the library's
``runtime.RetrainLoop`` for that node: federated fine-tuning over the drifted devices'
last labelled inputs (feedback labels), export, signature, the next version in the
repository the servers serve, and a canary rollout on that node. It then waits for the
node's guards to promote the version or roll it back. ``record`` keeps the drift per
group, each trigger, the retrain events and each rollout's stages; it becomes
``results.runtime.lifecycle.retrain``.

``shift_at_s`` plays a real drift in the run: ``shifted_stream`` continues each device's
stream with the shard of the device half the fleet away.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RetrainDriver", "drift_watch", "shifted_stream"]


def shifted_stream(
    own: tuple[np.ndarray, np.ndarray],
    other: tuple[np.ndarray, np.ndarray],
    onset: int,
    limit: int,
) -> tuple[np.ndarray, np.ndarray]:
    """A stream of ``limit`` inputs (and labels): ``own``'s first ``onset`` (cycling), then
    ``other``'s (cycling): another device's real data from input ``onset`` on."""
    (x, y), (xo, yo) = own, other
    onset = min(onset, limit)
    head = np.arange(onset) % len(x)
    tail = np.arange(max(limit - onset, 1)) % len(xo)
    return np.concatenate([x[head], xo[tail]]), np.concatenate([y[head], yo[tail]])


def drift_watch(
    settings: Any, reference: np.ndarray, session: Any, interval_s: float, seed: int
) -> Any:
    """A device's ``DriftWatch`` on its first ``settings.reference`` inputs, with the
    model's outputs from ``session`` (ONNX Runtime), at the stream's rate."""
    import dataclasses
    import math

    from edgeintel.monitoring import DriftConfig, alpha_per_test
    from edgeintel.onnx_files import onnx_predict
    from edgeintel.runtime.drift_watch import DriftWatch

    cfg = DriftConfig(
        window=settings.window,
        stride=settings.stride,
        input_hz=1.0 / interval_s,
        false_alarms_per_hour=settings.false_alarms_per_hour,
        calibration_windows=10**9,  # replaced below by what the false-alarm rate needs
        calibration_splits=4,
        seed=seed,
    )
    # bootstrap windows enough to place a threshold at the per-test false-alarm probability
    need = max(1000, math.ceil(2.0 / alpha_per_test(cfg)))
    cfg = dataclasses.replace(cfg, calibration_windows=need)
    return DriftWatch(cfg, reference[: settings.reference], lambda xs: onnx_predict(session, xs))


class RetrainDriver:
    """The retrain loop of a deployed run, in a thread (see the module doc).

    ``nodes``: the edge servers with devices (``ServerProcess``); ``agents``: node ->
    its ``DeviceAgent``s (their streams hold the feedback labels); ``model``: the run's
    torch model (the deployed version 1); ``tls``: the operator's ``TlsFiles`` or None."""

    def __init__(
        self,
        settings: Any,
        nodes: dict[str, Any],
        agents: dict[str, list[Any]],
        operator: str | None,
        tls: Any,
        repo: Path,
        signer: Any,
        model: Any,
        artifact: Any,
        seed: int,
    ) -> None:
        self.settings = settings
        self.nodes = nodes
        self.agents = agents
        self.operator = operator
        self.tls = tls
        self.repo = repo
        self.signer = signer
        self.model = model
        self.artifact = artifact
        self.seed = seed
        self.record: dict[str, Any] = {"triggers": [], "events": [], "rollouts": []}
        self._seen: dict[str, int] = {}
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self.thread = threading.Thread(target=self._run, name="retrain", daemon=True)

    def start(self) -> None:
        self._t0 = time.monotonic()
        self.thread.start()

    def stop(self) -> None:
        """The run is over: stop after the current step; the drift per group is read last."""
        self._stop.set()
        self.thread.join(120)
        drift: dict[str, Any] = {}
        for name, node in self.nodes.items():
            try:
                drift[name] = node.rollout(self.operator).get("drift", {})
            except Exception as exc:  # a node that is gone: say so
                drift[name] = {"error": f"{type(exc).__name__}: {exc}"}
        self.record["drift"] = drift

    def _clock(self) -> float:
        return time.monotonic() - self._t0

    def _run(self) -> None:
        try:
            while not self._stop.wait(0.5):
                for name, node in self.nodes.items():
                    triggered = node.rollout(self.operator)["drift"]["triggered"]
                    for trig in triggered[self._seen.get(name, 0) :]:
                        self._seen[name] = self._seen.get(name, 0) + 1
                        seen = round(self._clock(), 3)
                        self.record["triggers"].append({"server": name, **trig, "seen_s": seen})
                        if not self._stop.is_set():
                            self._retrain(name, str(trig["group"]), trig)
        except Exception as exc:  # recorded; the run goes on
            self.record["error"] = f"{type(exc).__name__}: {exc}"

    def _fresh(self, node: str, group: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """Each device of ``group`` at ``node``: its last ``fresh_inputs`` labelled inputs."""
        from edgeintel.runtime.drift_watch import device_group

        out = []
        for a in self.agents.get(node, []):
            if device_group(a.name) != group:
                continue
            end = a.store.next_index
            lo = max(0, end - self.settings.fresh_inputs)
            n = len(a.stream.inputs)
            idx = np.arange(lo, end) % n
            out.append((a.name, a.stream.inputs[idx], np.asarray(a.stream.labels[idx])))
        return out

    def _retrain(self, name: str, group: str, figures: dict[str, Any]) -> None:
        from edgeintel.runtime.retrain import RetrainLoop
        from edgeintel.runtime.transport import HttpTransport
        from edgeintel.training.rounds import FederatedConfig

        s = self.settings
        node = self.nodes[name]
        transport = HttpTransport(node.address, tls=self.tls)
        loop = RetrainLoop(
            model=self.model,
            input_shape=tuple(self.artifact.input_shape),
            labels=list(self.artifact.labels),
            repository=self.repo,
            name="model",
            fresh=lambda g: self._fresh(name, g),
            config=FederatedConfig(
                rounds=s.rounds,
                local_steps=s.local_steps,
                batch_size=s.batch_size,
                lr=s.lr,
                seed=self.seed,
            ),
            transport=transport,
            token=self.operator,
            signer=self.signer,
            rollout={"stages": list(s.stages), "min_results": s.min_results, "looks": s.looks},
            clock=self._clock,
            task=(self.artifact.extra or {}).get("task"),
        )
        try:
            version = loop.retrain(group, figures)
        except Exception as exc:
            loop._event("retrain.failed", group=group, error=f"{type(exc).__name__}: {exc}")
            version = None
        finally:
            transport.close()
            self.record["events"] += [{"server": name, **e} for e in loop.events]
        if version is None:
            return
        self.model = loop.model  # the next retrain starts from this version
        self.record["rollouts"].append(self._decision(name, version))

    def _decision(self, name: str, version: str) -> dict[str, Any]:
        """Wait for the node's guards on ``version`` (or the end of the run)."""
        node = self.nodes[name]
        t0 = self._clock()
        ro: dict[str, Any] = {}
        while True:
            ro = node.rollout(self.operator)["rollouts"].get("model") or {}
            if ro.get("state") not in (None, "running") or self._stop.wait(0.25):
                break
        running = ro.get("state") in (None, "running")
        return {
            "server": name,
            "version": version,
            "state": ro.get("state"),
            "reason": "the run ended first" if running else ro.get("reason"),
            "decided_s": None if running else round(self._clock() - t0, 2),
            "timeline": ro.get("timeline", []),
        }
