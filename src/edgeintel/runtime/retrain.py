"""The loop from drift to a new version: federated fine-tuning at the edge, then a rollout.

``RetrainLoop`` is a node's ``on_drift`` hook. When a device group drifts it asks
``fresh(group)`` for each device's recent labelled inputs (feedback labels), fine-tunes
the deployed model on them with the training component's ``FederatedEngine`` (FedAvg
rounds: only weight updates are averaged, no device's data is pooled with another's;
the in-process engine plays the devices' local rounds), exports the result as ONNX,
signs it, adds it to the node's repository as the next version and starts a canary
rollout of it through the node's ``/v1/rollout`` (so the guards judge it on live
traffic and roll it back if it is worse). The work runs in a thread: the node keeps
serving. ``events`` records each step (seconds on ``clock``).
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeintel.errors import DataError
from edgeintel.runtime.transport import Request, Transport

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from torch import nn

    from edgeintel.training.rounds import FederatedConfig

__all__ = ["DeviceData", "RetrainLoop", "federated_finetune"]

DeviceData = tuple[str, np.ndarray, np.ndarray]  # (device, inputs (n, ...), labels (n,))


def federated_finetune(
    model: nn.Module,
    shards: Sequence[DeviceData],
    config: FederatedConfig,
    num_classes: int,
    holdout: float = 0.2,
    seed: int = 0,
) -> tuple[nn.Module, list[Any]]:
    """``model`` fine-tuned by federated rounds over the devices' shards (a copy; the
    original is untouched) and the round records. Each device keeps ``holdout`` of its
    shard for the engine's evaluation."""
    from edgeintel.training.engine import FederatedEngine
    from edgeintel.training.rounds import ClientSpec

    usable = [(n, x, y) for n, x, y in shards if len(x) >= 2]
    if not usable:
        raise DataError("retrain: no device holds fresh labelled inputs")
    rng = np.random.default_rng(seed)
    xs, ys, xts, yts, parts = [], [], [], [], []
    start = 0
    for _, x, y in usable:
        order = rng.permutation(len(x))
        k = max(1, round(len(x) * holdout))
        tr, te = order[k:], order[:k]
        xs.append(x[tr])
        ys.append(y[tr])
        xts.append(x[te])
        yts.append(y[te])
        parts.append(np.arange(start, start + len(tr)))
        start += len(tr)
    clients = [ClientSpec(n, "edge") for n, _, _ in usable]
    engine = FederatedEngine(
        copy.deepcopy(model),
        np.concatenate(xs).astype(np.float32),
        np.concatenate(ys).astype(np.int64),
        parts,
        clients,
        np.concatenate(xts).astype(np.float32),
        np.concatenate(yts).astype(np.int64),
        config,
        num_classes,
    )
    history = engine.run()
    return engine.global_model(), history


@dataclass
class RetrainLoop:
    """A node's ``on_drift`` hook: fine-tune, export, sign, add the version, roll it out.

    ``model`` is the deployed version as a torch module (``input_shape`` without the batch
    axis, ``labels`` its classes); ``repository`` the node's model repository folder and
    ``name`` the model in it; ``fresh(group)`` the group's devices' recent labelled
    inputs; ``transport`` / ``token`` reach the node as an operator; ``rollout`` the
    ``RolloutSettings`` fields of the canary (model and version are filled in); ``task``
    the task record the repository keeps beside each version.
    """

    model: nn.Module
    input_shape: tuple[int, ...]
    labels: list[str]
    repository: Path
    name: str
    fresh: Callable[[str], Sequence[DeviceData]]
    config: FederatedConfig
    transport: Transport
    token: str | None = None
    signer: Ed25519PrivateKey | None = None
    rollout: dict[str, Any] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic
    task: Any = None  # the model's task record in the repository (what its outputs mean)
    events: list[dict[str, Any]] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)
    _busy: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, group: str, figures: dict[str, Any]) -> None:
        """Start a retrain for ``group`` in a thread (one at a time; a drift while one runs
        is recorded and skipped)."""
        if not self._busy.acquire(blocking=False):
            self._event("retrain.skipped", group=group, reason="a retrain is running")
            return
        t = threading.Thread(target=self._run, args=(group, figures), daemon=True)
        self.threads.append(t)
        t.start()

    def _event(self, event: str, **fields: Any) -> None:
        self.events.append({"t_s": round(self.clock(), 3), "event": event, **fields})

    def _run(self, group: str, figures: dict[str, Any]) -> None:
        try:
            self.retrain(group, figures)
        except Exception as exc:  # recorded: the fleet keeps its version
            self._event("retrain.failed", group=group, error=f"{type(exc).__name__}: {exc}")
        finally:
            self._busy.release()

    def retrain(self, group: str, figures: dict[str, Any] | None = None) -> str:
        """Fine-tune on ``group``'s fresh data, add the next version, start its rollout;
        returns the version."""
        from edgeintel.models.export import export_onnx
        from edgeintel.runtime.repository import MANIFEST, add_model

        shards = self.fresh(group)
        n = sum(len(x) for _, x, _ in shards)
        self._event("retrain.started", group=group, devices=len(shards), inputs=n,
                    drift=figures or {})  # fmt: skip
        t0 = self.clock()
        tuned, history = federated_finetune(
            self.model, shards, self.config, len(self.labels), seed=self.config.seed
        )
        manifest = json.loads((self.repository / self.name / MANIFEST).read_text())
        version = max(int(v) for v in manifest["versions"]) + 1
        out = self.repository.parent / f".{self.name}-retrain-{version}.onnx"
        export_onnx(tuned, self.input_shape, out, self.labels)
        add_model(self.repository, self.name, out, version, labels=self.labels,
                  signer=self.signer, task=self.task)  # fmt: skip
        last = history[-1] if history else None
        self._event(
            "retrain.done", group=group, version=str(version), rounds=len(history),
            holdout_accuracy=getattr(last, "accuracy", None), train_s=round(self.clock() - t0, 2),
        )  # fmt: skip
        self.model = tuned
        body = json.dumps({**self.rollout, "model": self.name, "version": str(version)})
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        resp = self.transport.send(Request("POST", "/v1/rollout", body.encode(), headers, 60.0))
        if resp.status != 200:
            raise RuntimeError(f"rollout of version {version} refused: {resp.body[:200]!r}")
        self._event("rollout.started", group=group, version=str(version))
        return str(version)
