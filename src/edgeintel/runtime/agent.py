"""``edgeintel device``: a device agent that senses, filters, infers and never loses a result.

The agent replays its share of the scenario's real data at the real rate
(frames at the clip's fps, sensor recordings over their duration, else
``settings.runtime.rate_hz``), skips what the redundancy filter rejects, and
runs each input locally (in the device profile's runtime: ONNX Runtime, or a
``predictor`` of ``edgeintel.inference.runtimes``) or offloads it per its plan, falling
back to local inference when the server is unreachable, slow (no answer in
``offload_timeout_ms``) or refuses. Each result goes first into the device's
SQLite store (durable before it counts as produced); a forwarder thread sends
the store's results in order to the server's ``/v1/results`` when the link is
up, urgent results first (an anomaly alarm, ``TaskKind.urgent``: it jumps the backlog
stored during an outage). Results carry the idempotency key ``<device>:<stream index>``; a restarted
agent resumes at the store's ``next_index``.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeintel.errors import ConfigError, ModelError
from edgeintel.runtime.agent_stats import AgentStats
from edgeintel.runtime.drift_watch import DriftWatch
from edgeintel.runtime.protocol import HEADER_LENGTH, decode_response, encode_request
from edgeintel.runtime.seams import (
    LOCAL_PLAN,
    Decision,
    ExecutionTier,
    Plan,
    ProcessAll,
    RedundancyFilter,
)
from edgeintel.runtime.settings import RuntimeSettings
from edgeintel.runtime.store import DeviceStore, StoreCorrupt, StoreFull
from edgeintel.runtime.transport import Request, Transport, TransportError
from edgeintel.runtime.updater import ActiveModel, ModelUpdater
from edgeintel.tasks import TaskKind, make_task

__all__ = [
    "FORWARD_HEADER",
    "AgentStats",
    "DeviceAgent",
    "DeviceStream",
    "check_model_preprocessing",
    "device_stream",
]

FORWARD_HEADER = "X-Edgeintel-Forward"  # the node an edge server relays the request to


@dataclass(frozen=True)
class DeviceStream:
    """A device's inputs (N, ...) float32, their true labels, seconds between inputs and the
    preprocessing record they were derived with (None: as loaded)."""

    inputs: np.ndarray
    labels: np.ndarray
    interval_s: float
    preprocessing: dict[str, Any] | None = None

    def digest(self) -> str:
        """sha256 of the inputs' float32 bytes in stream order (what the agent feeds)."""
        arr = np.ascontiguousarray(self.inputs, dtype=np.float32)
        return hashlib.sha256(arr.tobytes()).hexdigest()


def device_stream(scenario: Any, device: str) -> DeviceStream:
    """The named device's share of the scenario's data, derived as ``edgeintel run`` derives
    it (``derive_run_data``: same held-out sets, shard and preprocessing), paced at the
    data's own rate."""
    from edgeintel.data.device_data import derive_run_data, input_interval_s
    from edgeintel.training.scenario_train import resolve_mode
    from edgeintel.training.settings import TrainingMode

    devices = scenario.expand_devices()
    names = [d.name for d in devices]
    if device not in names:
        raise ConfigError(f"unknown device {device!r}; the scenario has {names[0]}..{names[-1]}")
    rd = derive_run_data(
        scenario.data,
        scenario.seed,
        len(devices),
        edge=resolve_mode(scenario) is not TrainingMode.CENTRAL,
        kind=scenario.task.kind,
    )
    x, y = rd.device_inputs(names.index(device))
    if len(x) == 0:
        raise ConfigError(f"device {device!r} holds no samples in this scenario's partition")
    interval = input_interval_s(rd.dataset, scenario.settings.runtime.rate_hz)
    return DeviceStream(x.astype(np.float32), y, interval, rd.preprocessing)


def check_model_preprocessing(onnx: Path, stream: DeviceStream) -> None:
    """Refuse a model whose metadata (``<model>.json``, written at export by ``edgeintel
    run``) records other preprocessing than the stream's: it would see mis-scaled inputs.
    A model without such a record (exported elsewhere) is not checked."""
    from edgeintel.data.device_data import check_preprocessing
    from edgeintel.data.split import Standardizer

    meta = Path(onnx).with_suffix(".json")
    try:
        extra = json.loads(meta.read_text()).get("extra") or {}
    except (OSError, ValueError, AttributeError):
        return
    if not isinstance(extra, dict) or "preprocess" not in extra:
        return
    pre = stream.preprocessing
    check_preprocessing(
        extra["preprocess"], None if pre is None else Standardizer.from_json(pre), str(meta)
    )


def _scalar(v: Any) -> Any:
    """A JSON-ready Python value of one prediction or target (a scalar, or a list)."""
    a = np.asarray(v)
    return a.item() if a.ndim == 0 else a.tolist()


class DeviceAgent:
    """One device: a producer loop (sense -> filter -> infer -> store) and a forwarder thread.

    ``session`` runs the local model (input name from the session), unless ``predictor``
    (``Runtime.load(artifact)``: the same model in the device profile's runtime, e.g. an
    OpenVINO IR or an ExecuTorch program) runs it; versions fetched over the air run in
    ONNX Runtime (the servers hold ONNX). For a split (a
    decision with a ``tail_model``) the decision's ``head`` (else ``head_session``) runs
    on the device and its outputs go to the tail model on the server (one output may be
    renamed ``tail_input``); on failure the whole local model runs instead. ``transport``
    reaches the device's server (None: no server, results stay in the store).
    ``plan`` and ``filter`` come from the offloading and caching components;
    defaults run everything locally and process every input. ``server_node`` names the
    node ``transport`` reaches; a decision for another node (the cloud) is sent there
    with the ``X-Edgeintel-Forward`` header and relayed by that server. An input the
    filter skips reuses the last result (placement ``reused``; nothing is uploaded).

    Versions: ``version`` is the local model's; each result records the model and the
    version that computed it (``error`` when that version failed on the input: the
    previous version answers instead, so no result is lost). With an ``updater`` the
    agent follows the server's ``assign`` (a rollout): it fetches, verifies and swaps
    in the assigned version between two inputs (hot swap; the input being computed
    finishes on the old session), reports its version and refused versions with each
    delivery, and on restart resumes the version it last ran. With ``drift`` (a
    ``DriftWatch``) every computed input and its output feed the device's drift monitor;
    its state goes with each delivery and the result that raised an alarm is marked.
    A D2D decision goes to the helper device named by its target over ``peers[target]``
    (the helper's agent answers through its ``runtime.peer.PeerService``, on its own
    active version: ``serve_peer``); a helper this agent has no link to, or that fails,
    falls back to local inference.
    """

    def __init__(
        self,
        name: str,
        stream: DeviceStream,
        session: Any,
        store: DeviceStore,
        transport: Transport | None = None,
        model: str = "model",
        plan: Plan = LOCAL_PLAN,
        filter: RedundancyFilter | None = None,
        token: str | None = None,
        settings: RuntimeSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        retry_after_s: float = 1.0,
        head_session: Any = None,
        tail_input: str | None = None,
        server_node: str | None = None,
        task: TaskKind | None = None,
        version: str = "1",
        updater: ModelUpdater | None = None,
        predictor: Any = None,
        drift: DriftWatch | None = None,
        peers: dict[str, Transport] | None = None,
    ) -> None:
        self.name = name
        self.task = task if task is not None else make_task("classification")
        self.stream = stream
        self.active = self.initial = ActiveModel(session, version, predictor)
        self.token = token
        self.previous: ActiveModel | None = None  # answers when the active version fails
        self.updater = updater
        self.drift = drift  # label-free drift monitor of the inputs and outputs (reported)
        self.peers = dict(peers or {})  # helper device -> transport over the D2D link
        self.versions: list[tuple[float, str]] = []  # (clock s, version) of each swap
        self.last_version, self.last_error = version, False  # of the last ``infer``
        if updater is not None:
            stored = updater.current()
            if stored is not None and stored != version:
                try:  # a restarted agent resumes the version it last ran
                    self.active = updater.open(stored)
                except ModelError as exc:
                    updater.refused[stored] = str(exc)
        self._model_lock = threading.Lock()  # the producer and D2D requests share the model
        self.store = store
        self.transport = transport
        self.model = model
        self.plan = plan
        self.filter = filter or ProcessAll()
        self.settings = settings or RuntimeSettings()
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._clock = clock
        self._sleep = sleep
        self.retry_after_s = retry_after_s
        # split plans: the device runs the head and posts its output to the tail model
        self.head_session = head_session
        self.tail_input = tail_input
        self.server_node = server_node
        self._blocked: dict[str, float] = {}  # target node -> clock time it may be retried
        self.stats = AgentStats(seed=int.from_bytes(hashlib.sha256(name.encode()).digest()[:4]))
        self._stop = threading.Event()
        self._halt = threading.Event()
        self._abort = threading.Event()  # a reboot: stop at once, no drain
        self.forward_errors = 0
        self.last_forward_error: str | None = None  # why the last forward failed (a hint)
        self.store_error: StoreCorrupt | None = None  # an encrypted record failed to open
        self.started: float | None = None

    # ------------------------------------------------------------------ inference

    @property
    def session(self) -> Any:
        """The ONNX Runtime session of the active version."""
        return self.active.session

    @property
    def input_name(self) -> str:
        return self.active.input_name

    def swap(self, model: ActiveModel) -> None:
        """Run ``model`` from the next input on (one reference assignment: an input being
        computed finishes on the session it started with)."""
        if model.version == self.active.version:
            return
        self.previous, self.active = self.active, model
        self.versions.append((self._clock(), model.version))
        if self.drift is not None:
            self.drift.restart(model.run)
        if self.updater is not None:
            self.updater.commit(model.version)

    def _local(self, x: np.ndarray) -> np.ndarray:
        m = self.active
        self.last_version, self.last_error = m.version, False
        try:
            with self._model_lock:
                out = m.run(np.ascontiguousarray(x[None]))[0]
            if out.dtype.kind == "f" and not np.isfinite(out).all():
                raise ValueError("non-finite output")
            return out
        except Exception:
            if self.previous is None:
                raise
            self.last_error = True  # counted against m.version; the previous one answers
            prev = self.previous
            with self._model_lock:
                return prev.run(np.ascontiguousarray(x[None]))[0]

    def serve_peer(self, batch: np.ndarray) -> tuple[np.ndarray, str]:
        """A neighbour's inputs (N, ...) run on this device's active version (D2D): its
        outputs and that version. ``ValueError`` for inputs of another shape."""
        m = self.active
        want = tuple(self.stream.inputs.shape[1:])
        if batch.ndim != len(want) + 1 or tuple(batch.shape[1:]) != want:
            dims = ", ".join(map(str, want))
            raise ValueError(
                f"D2D input of shape {tuple(batch.shape)}; this model takes (N, {dims})"
            )
        with self._model_lock:
            out = m.run(np.ascontiguousarray(batch, dtype=np.float32))
            self.stats.served_d2d += len(batch)
        return out, m.version

    def _route(self, decision: Decision) -> Transport | None:
        """The transport a decision's request goes over: the helper's for D2D (None when
        this agent has no link to it), else the device's server's."""
        if decision.tier is ExecutionTier.D2D:
            return self.peers.get(decision.target or "")
        return self.transport

    def _offload(self, x: np.ndarray, decision: Decision) -> np.ndarray:
        transport = self._route(decision)
        assert transport is not None
        d2d = decision.tier is ExecutionTier.D2D
        head = decision.head if decision.head is not None else self.head_session
        if decision.tail_model is not None and head is not None:
            head_in = head.get_inputs()[0].name
            names = [o.name for o in head.get_outputs()]
            values = head.run(names, {head_in: x[None]})
            if len(names) == 1 and self.tail_input is not None:
                names = [self.tail_input]
            feeds = {n: np.ascontiguousarray(v) for n, v in zip(names, values, strict=True)}
        else:
            feeds = {self.input_name: np.ascontiguousarray(x[None])}
        body, hl = encode_request(feeds, binary=True)
        headers = dict(self.headers)
        if hl is not None:
            headers["Inference-Header-Content-Length"] = str(hl)
        if not d2d and decision.target is not None and decision.target != self.server_node:
            headers[FORWARD_HEADER] = decision.target  # the edge server relays it onward
        target = decision.tail_model or self.model
        req = Request(
            "POST",
            f"/v2/models/{target}/infer",
            body,
            headers,
            timeout_s=self.settings.offload_timeout_ms / 1000,
        )
        resp = transport.send(req)
        if resp.status != 200:
            raise TransportError(f"server answered {resp.status}")
        h = resp.headers.get(HEADER_LENGTH) or resp.headers.get("Inference-Header-Content-Length")
        n = int(h) if h else None
        outs = decode_response(resp.body, n)
        head = json.loads(resp.body[: len(resp.body) if n is None else n])
        self.last_version, self.last_error = str(head.get("model_version", "")), False
        return next(iter(outs.values()))[0]

    def _unreachable(self) -> frozenset[str]:
        now = self._clock()
        return frozenset(k for k, until in self._blocked.items() if until > now)

    def infer(self, x: np.ndarray) -> tuple[np.ndarray, str, float]:
        """(logits, placement, latency ms); offloads per the plan's decision for this
        request, falls back to local (and blocks that target for ``retry_after_s``)."""
        t0 = time.perf_counter()
        placement = "device"
        decision = self.plan.decide(self._unreachable())
        if decision.tier is not ExecutionTier.DEVICE:
            node = decision.target or self.server_node or "server"
            if self._route(decision) is not None and self._blocked.get(node, -1.0) <= self._clock():
                try:
                    out = self._offload(x, decision)
                    kind = f"split-{decision.tier}" if decision.tail_model else str(decision.tier)
                    ms = (time.perf_counter() - t0) * 1000
                    observe = getattr(self.plan, "observe_latency", None)
                    if observe is not None:  # an adaptive plan learns what offloading costs
                        observe(decision.label, ms)
                    return out, kind, ms
                except (TransportError, ValueError):
                    self._blocked[node] = self._clock() + self.retry_after_s
            placement = "device_fallback"
        out = self._local(x)
        return out, placement, (time.perf_counter() - t0) * 1000

    # ------------------------------------------------------------------ loops

    def delivery_hint(self, undelivered: int) -> str | None:
        """Why ``undelivered`` stored results were not forwarded, and what to do (None when
        every result was delivered or no forward was tried)."""
        if undelivered <= 0 or self.last_forward_error is None:
            return None
        err = self.last_forward_error
        todo = ""
        if "no sink" in err:
            todo = "; start the server with `edgeintel serve REPO --sink FILE` to store them"
        elif " 401" in err or " 403" in err:
            todo = "; give this device's --token (the server's --tokens file)"
        return f"{undelivered} result(s) not delivered, last error: {err}{todo}"

    def run(
        self,
        limit: int,
        duration_s: float | None = None,
        drain_timeout_s: float = 30.0,
    ) -> AgentStats:
        """Produce results for stream indices ``next_index .. limit-1`` at the stream's rate
        (or until ``duration_s``), then forward what is left for up to ``drain_timeout_s``.
        It may be called again to go on where the store left off."""
        self._stop.clear()
        fwd = threading.Thread(target=self._forward_loop, name=f"fwd-{self.name}", daemon=True)
        if self.transport is not None:
            fwd.start()
        try:
            self._produce(limit, duration_s)
        finally:
            deadline = self._clock() + drain_timeout_s
            while (
                self.transport is not None
                and self.store.size > 0
                and self.store_error is None
                and not self._abort.is_set()
                and self._clock() < deadline
            ):
                self._sleep(0.05)
            self._stop.set()
            if fwd.is_alive():
                fwd.join(timeout=30)
        if self.store_error is not None:
            raise self.store_error
        return self.stats

    def halt(self) -> None:
        """Stop producing (the forwarder still drains within ``run``'s drain timeout)."""
        self._halt.set()

    def abort(self) -> None:
        """Stop at once, as a reboot does: no drain; the store keeps what is undelivered."""
        self._abort.set()
        self._halt.set()

    def _produce(self, limit: int, duration_s: float | None) -> None:
        n = len(self.stream.inputs)
        start = self.store.next_index
        t0 = self.started = self._clock()
        last: np.ndarray | None = None  # the last prediction, reused for skipped inputs
        alarm = False  # this input raised a drift alarm
        for k, i in enumerate(range(start, limit)):
            due = t0 + k * self.stream.interval_s
            now = self._clock()
            if self._halt.is_set() or (duration_s is not None and now - t0 >= duration_s):
                break
            if due > now:
                self._sleep(due - now)
            x = self.stream.inputs[i % n]
            tf = time.perf_counter()
            process = self.filter.should_process(x)
            if not process and last is not None:
                self.stats.skipped += 1
                self.stats.bytes_not_uploaded += int(x.nbytes)
                pred, placement, ms = last, "reused", (time.perf_counter() - tf) * 1000
            else:
                logits, placement, ms = self.infer(x)
                # the task kind's prediction: a label, a value, an anomaly score
                pred = last = self.task.predict(np.asarray(logits)[None], x[None])
                if self.drift is not None and self.drift.update(x, np.asarray(logits)):
                    alarm = True
                observe = getattr(self.filter, "observe", None)
                if process and observe is not None:  # an adaptive filter learns the result
                    observe(_scalar(pred[0]))
            truth = _scalar(self.stream.labels[i % n])
            correct = bool(self.task.correct(pred, np.asarray([truth]))[0])
            payload = {
                **self.task.record(pred[0]),
                "truth": truth,
                "correct": correct,  # by the kind's rule: what a rollout's metric guard counts
                "placement": placement,
                "latency_ms": ms,
                "model": self.model,
                "version": self.last_version,
            }
            if self.last_error:
                payload["error"] = True
            if alarm:
                payload["drift_alarm"] = True
                alarm = False
            try:
                self.store.append(
                    f"{self.name}:{i}",
                    i * self.stream.interval_s,
                    payload,
                    index=i,
                    priority=self.task.urgent(pred[0]),  # an alarm jumps the stored backlog
                )
            except StoreFull:
                self.stats.rejected += 1
                continue
            s = self.stats
            s.produced += 1
            s.correct += correct
            s.record(placement, ms, self._clock() - t0, correct)

    def _forward_loop(self) -> None:
        assert self.transport is not None
        backoff = 0.05
        batch_size = self.settings.store.forward_batch
        while not self._stop.is_set():
            self.store.expire()
            try:
                batch = self.store.pending(batch_size)
            except StoreCorrupt as exc:  # never forwarded, never deleted: stop and say so
                self.store_error = exc
                self._halt.set()
                return
            if not batch:
                self._stop.wait(0.02)
                continue
            status: dict[str, Any] = {"model": self.model, "version": self.active.version}
            if self.updater is not None and self.updater.refused:
                status["refused"] = dict(self.updater.refused)
            if self.drift is not None:
                status["drift"] = self.drift.report()
            body = json.dumps(
                {"device": self.name, "records": [r.to_json() for r in batch], "status": status},
                separators=(",", ":"),
            ).encode()
            try:
                resp = self.transport.send(
                    Request(
                        "POST",
                        "/v1/results",
                        body,
                        {**self.headers, "Content-Type": "application/json"},
                        timeout_s=10.0,
                    )
                )
                if resp.status != 200:
                    raise TransportError(f"server answered {resp.status}: {resp.body[:200]!r}")
                ack = json.loads(resp.body)
                self.store.ack([r.seq for r in batch], int(ack["accepted"]), int(ack["duplicates"]))
                backoff = 0.05
                self.follow(ack.get("assign"))
            except (TransportError, ValueError, KeyError) as exc:
                self.forward_errors += 1
                self.last_forward_error = str(exc)[:300]
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 1.0)

    def follow(self, assign: Any) -> None:
        """Swap to the version the server assigns this device's model (a rollout), fetched
        and verified by the updater; a refused version is kept out and reported."""
        if self.updater is None or not isinstance(assign, dict):
            return
        want = assign.get(self.model)
        if not isinstance(want, str) or want == self.active.version:
            return
        if want in self.updater.refused:
            return
        if self.previous is not None and self.previous.version == want:
            self.swap(self.previous)  # a rollback: the previous session is still open
            return
        try:
            self.swap(self.updater.fetch(want))
        except ModelError:
            pass  # refused: reported with the next delivery's status
        except TransportError as exc:
            self.last_forward_error = f"fetching version {want}: {exc}"[:300]
