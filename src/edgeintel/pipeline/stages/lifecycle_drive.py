"""A deployed run's lifecycle check (``settings.runtime.deploy.lifecycle``): rollouts on
the running fleet, a good version promoted and a deliberately bad one rolled back.

``LifecycleDriver`` runs beside the device agents. It adds version 2 (the run's model,
signed anew) to the repository every server of the run serves, starts its rollout on each
edge server with devices, and waits for each server to decide. With ``bad_version`` it
then does the same with version 3 (``shifted_classes``: the model with its output
classes shifted by one). ``record`` holds, per version and server, the state, the reason
and the timeline that ``results.runtime.lifecycle`` and the report show.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from edgeintel.errors import EdgeIntelError

__all__ = ["LifecycleDriver", "shifted_classes"]


def shifted_classes(src: Path, dst: Path) -> Path:
    """A copy of the ONNX model at ``src`` whose first output's classes are shifted by one
    (class ``k`` answered as ``k + 1``): the same size and speed, wrong answers."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    out = graph.output[0]
    dims = out.type.tensor_type.shape.dim
    classes = dims[-1].dim_value if dims and dims[-1].dim_value > 0 else 0
    if classes < 2:
        raise EdgeIntelError(f"{src}: output {out.name!r} has no fixed class axis to shift")
    raw = out.name + "_unshifted"
    for node in graph.node:
        node.output[:] = [raw if o == out.name else o for o in node.output]
    perm = np.roll(np.arange(classes, dtype=np.int64), 1)
    graph.initializer.append(numpy_helper.from_array(perm, out.name + "_perm"))
    graph.node.append(
        helper.make_node("Gather", [raw, out.name + "_perm"], [out.name], axis=len(dims) - 1)
    )
    onnx.save(model, str(dst))
    return dst


class LifecycleDriver:
    """Rollouts on a running deployment, in a thread (see the module doc).

    ``nodes``: the edge servers with devices (``ServerProcess``); ``operator``: the
    operator's token; ``repo``: the repository the servers serve; ``signer`` signs the
    new versions."""

    def __init__(
        self,
        settings: Any,
        nodes: dict[str, Any],
        operator: str | None,
        repo: Path,
        signer: Any,
        labels: list[str],
        task: Any = None,
    ) -> None:
        self.settings = settings
        self.nodes = nodes
        self.operator = operator
        self.repo = repo
        self.signer = signer
        self.labels = labels
        self.task = task
        self.record: dict[str, Any] = {"versions": []}
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="lifecycle", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Stop waiting (the run is over); what was decided so far stays in ``record``."""
        self._stop.set()
        self.thread.join(30)

    def _run(self) -> None:
        try:
            if self._stop.wait(self.settings.after_s):
                return
            self._version(2, "good: the run's model, signed anew")
            if self.settings.bad_version and not self._stop.is_set():
                self._version(3, "bad: output classes shifted by one")
        except Exception as exc:  # recorded; the run goes on
            self.record["error"] = f"{type(exc).__name__}: {exc}"

    def _version(self, version: int, what: str) -> None:
        from edgeintel.runtime.repository import add_model

        src = self.repo / "model" / "1" / "model.onnx"
        f = src
        if version == 3:
            f = shifted_classes(src, self.repo.parent / "model_v3_shifted.onnx")
        add_model(self.repo, "model", f, version, labels=self.labels, signer=self.signer,
                  task=self.task)  # fmt: skip
        s = self.settings
        body = {
            "model": "model", "version": str(version), "stages": list(s.stages),
            "min_results": s.min_results, "looks": s.looks,
        }  # fmt: skip
        entry: dict[str, Any] = {"version": str(version), "what": what, "servers": {}}
        self.record["versions"].append(entry)
        t0 = time.monotonic()
        for node in self.nodes.values():
            node.rollout(self.operator, body)
        pending = set(self.nodes)
        while pending and not self._stop.wait(0.25):
            for name in sorted(pending):
                ro = self.nodes[name].rollout(self.operator)["rollouts"]["model"]
                if ro["state"] != "running":
                    pending.discard(name)
                    entry["servers"][name] = {
                        "state": ro["state"], "reason": ro["reason"],
                        "decided_s": round(time.monotonic() - t0, 2),
                        "timeline": ro["timeline"],
                    }  # fmt: skip
        for name in pending:  # the run ended first
            ro = self.nodes[name].rollout(self.operator)["rollouts"]["model"]
            entry["servers"][name] = {"state": ro["state"], "reason": "the run ended first",
                                      "timeline": ro["timeline"]}  # fmt: skip
