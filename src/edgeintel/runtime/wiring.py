"""The real components behind the runtime's seams.

* ``ServerResultCache``: ``edgeintel.caching``'s result cache (exact tier by content
  hash, approximate tier by feature vector with an H-kNN vote in a usearch index) in
  front of one model on a server; ``input_features`` derives the feature vector of
  a request (the input average-pooled to 8 per spatial axis, as the caching stage
  does).
* ``device_filter``: ``edgeintel.caching``'s ``AdaptiveFilter`` on a device's raw
  inputs, with the tuned feature and threshold, probes and online adaptation;
  ``tune_device_filter`` tunes it on the device's first profiling segment.
* ``AdaptivePlan``: the offloading planner's options for one device, re-decided per
  request by ``offloading.adapt.AdaptivePolicy`` (hysteresis) from the link state the
  agent observes (its link emulator's trace time) and the targets that failed lately;
  split options run the head ONNX on the device and the tail on the server.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeintel.caching.answers import answer_rule, approximate_allowed, cached_answer
from edgeintel.caching.filter import (
    FRAME_FEATURES,
    SENSOR_FEATURES,
    AdaptiveFilter,
    TuneReport,
    prepare,
    tune_filter,
)
from edgeintel.caching.result_cache import CacheStats, ResultCache, ResultCacheConfig
from edgeintel.caching.reuse import downsample_vector
from edgeintel.errors import ConfigError, DataError
from edgeintel.runtime.seams import Decision, ExecutionTier
from edgeintel.tasks import TaskKind, make_task

if TYPE_CHECKING:
    from edgeintel.caching.settings import FilterSettings, ResultCacheSettings
    from edgeintel.offloading.placement import Option
    from edgeintel.offloading.planner import OffloadPlanner
    from edgeintel.scenario import Device, Scenario

__all__ = [
    "AdaptivePlan",
    "FilterThreshold",
    "ServerResultCache",
    "SplitTail",
    "device_filter",
    "filter_for_device",
    "input_features",
    "mask_key",
    "server_cache",
    "threshold_from_results",
    "tune_device_filter",
]


# ---------------------------------------------------------------------- server cache


def input_features(feeds: dict[str, np.ndarray]) -> np.ndarray | None:
    """Feature vector of a one-row request with one float input (C, H, W) or (C, L):
    ``caching.reuse.downsample_vector`` of that row; None otherwise (exact tier only)."""
    if len(feeds) != 1:
        return None
    (x,) = feeds.values()
    if x.dtype.kind != "f" or x.ndim not in (3, 4) or x.shape[0] != 1:
        return None
    try:
        return downsample_vector(x[0])
    except (DataError, ValueError):
        return None


def server_cache(
    settings: ResultCacheSettings,
    node: str,
    clock: Callable[[], float] = time.monotonic,
    task: TaskKind | None = None,
) -> Any:
    """The result cache ``settings.caching.result_cache`` describes for one model on node
    ``node``: in process (``backend: memory``), or the exact tier shared in Redis with a
    local approximate tier (``backend: redis``, ``caching.redis_cache.RedisResultCache``;
    created at the first request, whose feature vector fixes the dimension). ``task``: the
    model's task kind (``repository.model_task``), whose rule the in-process vote uses."""
    if settings.backend == "redis":
        return _LazyRedis(settings, node, task)
    return ServerResultCache(settings, clock, task)


class _LazyRedis:
    """``RedisResultCache.from_settings`` built at the first request (its approximate
    tier needs the feature vectors' dimension; it votes by ``task``'s rule)."""

    enabled = True

    def __init__(self, settings: ResultCacheSettings, node: str, task: TaskKind | None) -> None:
        self.settings, self.node, self.task = settings, node, task
        self.cache: Any = None

    def _ensure(self, features: np.ndarray | None) -> Any:
        if self.cache is None:
            from edgeintel.caching.redis_cache import RedisResultCache

            dim = None if features is None else int(features.size)
            self.cache = RedisResultCache.from_settings(self.settings, self.node, dim, self.task)
        return self.cache

    @property
    def stats(self) -> CacheStats:
        return self.cache.stats if self.cache is not None else CacheStats()

    def get(self, key: str, features: np.ndarray | None = None) -> dict[str, np.ndarray] | None:
        return self._ensure(features).get(key, features)  # type: ignore[no-any-return]

    def put(
        self, key: str, outputs: dict[str, np.ndarray], features: np.ndarray | None = None
    ) -> None:
        self._ensure(features).put(key, outputs, features)


class ServerResultCache:
    """``edgeintel.caching.ResultCache`` behind the runtime's ``ResultCache`` seam, for one
    model: the exact tier keyed by the request's ``tensor_key``, the approximate tier by
    its feature vector (created at the first vector, whose size fixes the index's
    dimension; a vector of another size uses the exact tier only). Time for TTLs comes
    from ``clock`` (seconds).

    With the model's ``task`` kind the approximate vote compares the kind's predictions by
    its rule (``TaskKind.same``: regression values within the tolerance); a kind whose
    prediction needs the input itself (``needs_input``: an anomaly score is the error of
    reconstructing that input) uses the exact tier only. Without a kind, outputs are
    compared by their arg-max label (a classifier)."""

    enabled = True

    def __init__(
        self,
        settings: ResultCacheSettings,
        clock: Callable[[], float] = time.monotonic,
        task: TaskKind | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self.task = task
        self.approximate = approximate_allowed(task)
        self.cache: ResultCache | None = None
        self._lock = threading.Lock()

    def _ensure(self, features: np.ndarray | None) -> ResultCache | None:
        if self.cache is None and features is not None:
            cfg = ResultCacheConfig.from_settings(self.settings, int(features.size))
            self.cache = ResultCache(cfg, answer_rule(self.task))
        return self.cache

    def _vector(self, features: np.ndarray | None) -> np.ndarray | None:
        if features is None or self.cache is None or not self.approximate:
            return None
        return features if features.size == self.cache.config.dim else None

    @property
    def stats(self) -> CacheStats:
        """Hits per tier, misses, ... (empty until the first request with a vector)."""
        return self.cache.stats if self.cache is not None else CacheStats()

    def get(self, key: str, features: np.ndarray | None = None) -> dict[str, np.ndarray] | None:
        with self._lock:
            cache = self._ensure(features)
            if cache is None:
                return None
            found = cache.lookup(self._clock(), key.encode(), self._vector(features))
        return found.result.outputs if found.hit else None

    def put(
        self, key: str, outputs: dict[str, np.ndarray], features: np.ndarray | None = None
    ) -> None:
        with self._lock:
            cache = self._ensure(features)
            if cache is not None:
                answer = cached_answer(outputs, self.task)
                cache.insert(answer, self._clock(), key.encode(), self._vector(features))


# ---------------------------------------------------------------------- device filter


def device_filter(
    feature: str,
    threshold: float,
    settings: FilterSettings,
    task: TaskKind | None = None,
    sensitivity: float | None = None,
) -> AdaptiveFilter:
    """``caching.filter.AdaptiveFilter`` on raw device inputs with the scenario's probing
    and adaptation settings (``adapt``, ``probe_every``, ``raise_after``), judging results
    by the task kind's agreement rule (``TaskKind.same``; ``None``: equal labels) and, with
    ``sensitivity`` (from tuning), guarding reuse by the kind's ``margin``."""
    kind = task if task is not None else make_task("classification")
    return AdaptiveFilter(
        feature,
        threshold,
        adapt=settings.adapt,
        probe_every=settings.probe_every,
        raise_after=settings.raise_after,
        same=kind.same,
        margin=kind.margin,
        sensitivity=sensitivity,
    )


def tune_device_filter(
    inputs: np.ndarray,
    predict: Callable[[np.ndarray], np.ndarray],
    settings: FilterSettings,
    task: TaskKind | None = None,
) -> tuple[AdaptiveFilter, TuneReport]:
    """Tune on the device's first ``profile_fraction`` of inputs, every one processed by
    ``predict`` (the local model, (N, ...) -> outputs) and judged by the task kind's
    predictions and agreement rule, as the caching stage does (``caching.filter.tune_filter``
    replaying the filter's adaptation)."""
    kind = task if task is not None else make_task("classification")
    if len(inputs) < 2:
        raise DataError(f"profiling the filter needs at least 2 inputs, got {len(inputs)}")
    k = max(2, round(len(inputs) * settings.profile_fraction))
    seg = inputs[:k]
    prepared = [prepare(x) for x in seg]
    labels = kind.predict(predict(seg), seg).tolist()
    features: Sequence[str] = settings.features or (
        FRAME_FEATURES if prepared[0].dtype == np.uint8 else SENSOR_FEATURES
    )
    report = tune_filter(
        prepared,
        labels,
        settings.target,
        features,
        adapt=settings.adapt,
        probe_every=settings.probe_every,
        raise_after=settings.raise_after,
        same=kind.same,
        urgent=kind.urgent if type(kind).urgent is not TaskKind.urgent else None,
        alert_margin=settings.alert_margin,
        margin=kind.margin,
        sensitivity_quantile=settings.sensitivity_quantile,
        sensitivity_factor=settings.sensitivity_factor,
    )
    filt = device_filter(report.feature, report.threshold, settings, kind, report.sensitivity)
    return filt, report


@dataclass(frozen=True)
class FilterThreshold:
    """A redundancy filter's tuned operating point: the feature it compares and the
    distance below which an input counts as a repeat (units of that feature), for a
    kind with a margin rule the sensitivity that guards reuse (None: no guard), and
    whether the filter stands aside on the device (it would cost more than it saves,
    ``caching.filter_cost.filter_pays``)."""

    feature: str
    threshold: float
    sensitivity: float | None = None
    stands_aside: bool = False


def filter_for_device(
    settings: FilterSettings,
    inputs: np.ndarray,
    session: Any,
    tuned: FilterThreshold | None,
    task: TaskKind | None = None,
    model_ms: float | None = None,
) -> tuple[AdaptiveFilter | None, dict[str, Any]]:
    """A device's redundancy filter and where its threshold came from: ``tuned`` (the
    caching stage's), else tuned now on the device's first profiling segment with the
    local ONNX ``session``; results compared by ``task``'s rule (``None``: equal labels).
    No filter (``None``) where it stands aside: the caching stage found it would cost
    more than it saves, or, tuned here with the model's cost ``model_ms`` (ms per input on
    this machine) given, its cost beats the model time it saves on the profiling segment.
    The one way the runtime stage and ``edgeintel device`` get it."""
    from edgeintel.caching.filter_cost import aside_reason, filter_cost_ms, filter_pays

    if tuned is not None:
        info = {
            "feature": tuned.feature,
            "threshold_tuned": tuned.threshold,
            "threshold_from": "caching stage",
        }
        if tuned.stands_aside:
            return None, {**info, "stands_aside": True}
        filt = device_filter(tuned.feature, tuned.threshold, settings, task, tuned.sensitivity)
        return filt, info
    input_name = session.get_inputs()[0].name
    filt, report = tune_device_filter(
        inputs, lambda b: session.run(None, {input_name: b})[0], settings, task
    )
    info = {
        "feature": report.feature,
        "threshold_tuned": report.threshold,
        "threshold_from": "tuned on the device's first segment",
    }
    if model_ms is not None:
        filter_ms = filter_cost_ms(inputs, report.feature)
        if not filter_pays(report.skip_fraction, filter_ms, model_ms):
            reason = aside_reason(report.skip_fraction, filter_ms, model_ms)
            return None, {**info, "stands_aside": True, "reason": reason}
    return filt, info


def task_for_model(onnx: str | Path, kind: TaskKind) -> TaskKind:
    """``kind`` with the options its run fitted for the model ``onnx`` (the anomaly
    threshold, the regression tolerance), read from the ``task`` record of the model's
    metadata (``<model>.json``, written by the export stage); ``kind`` itself when the record
    is absent. A record of another kind is one line naming the file."""
    meta = Path(onnx).with_suffix(".json")
    try:
        record = (json.loads(meta.read_text()).get("extra") or {}).get("task")
    except (OSError, ValueError, AttributeError):
        return kind
    if not isinstance(record, dict):
        return kind
    if record.get("kind") != kind.name:
        raise ConfigError(
            f"{meta}: the model was trained for the {record.get('kind')!r} task kind, but the "
            f"scenario's task.kind is {kind.name!r}"
        )
    options = {k: v for k, v in record.items() if k != "kind"}
    return make_task(kind.name, **{**kind.options(), **options})


def threshold_from_results(results: Path, device: str) -> FilterThreshold:
    """The threshold a run's caching stage tuned for ``device``, read from its results.json
    (``caching.filter.per_device[device].threshold``) through the checked loader: a broken
    file or a value of the wrong type is one line naming the file and the key."""
    from edgeintel.records import check_results, read_json

    if Path(results).is_dir():
        raise ConfigError(
            f"--filter-from {results}: is a folder; expected a run's results.json "
            f"(e.g. {Path(results) / 'results.json'})"
        )
    rec = read_json(results, f"the results.json of a run (--filter-from, for {device!r})")
    check_results(rec)
    caching = rec.sub("caching", default=None)
    filt = None if caching is None else caching.sub("filter", default=None)
    per = None if filt is None else filt.sub("per_device", default=None)
    if per is None or device not in per.data:
        raise ConfigError(
            f"--filter-from {results}: no caching filter threshold for {device!r} "
            "(results.caching.filter.per_device); run the caching stage for this scenario"
        )
    th = per.sub(device).sub("threshold")
    sens = th.number("sensitivity", lo=0, default=None)
    aside = per.sub(device).get("stands_aside", bool, "true or false", default=False)
    return FilterThreshold(th.text("feature"), th.number("threshold"), sens, aside)


# ---------------------------------------------------------------------- adaptive plan


def mask_key(mask: np.ndarray) -> bytes:
    """A split's identity: its device mask, packed."""
    return np.packbits(np.asarray(mask, dtype=bool)).tobytes() + bytes([len(mask) % 8])


@dataclass(frozen=True)
class SplitTail:
    """A split served by the runtime: the tail's model name on the servers and the head's
    ONNX Runtime session on the devices."""

    tail_model: str
    head: Any = field(compare=False, repr=False)


class AdaptivePlan:
    """Per-request decisions for one device from the offloading planner's options.

    ``trace_time()`` is the time (s) of the scenario's link traces the agent observes
    (its ``LinkEmulator.trace_time``); options are costed with
    ``OffloadPlanner.options(scenario, device, t, unreachable)`` (memoized per link
    state) and chosen by an ``AdaptivePolicy`` started on the fleet plan's choice
    ``initial``. Targets the runtime cannot reach from this device (edge servers other
    than its own, D2D helpers not in ``peers``: the neighbours whose agents serve it a
    ``PeerService``), splits without a served tail and splits towards a helper device
    (a helper runs the whole model) are left out.
    ``switches`` records (trace time s, old label, new label, reason).

    Measured latency: the agent reports each offloaded request's end-to-end time
    (``observe_latency``); under the latency objective an option measured at least
    ``min_samples`` times is valued at the exponential moving average (weight
    ``alpha``) of its measurements instead of the cost model's prediction, so a
    server slower than planned (queueing, a busy machine) loses the device's
    requests. Local execution is not measured here (this machine is not the
    device), so local keeps the profile's prediction.
    """

    def __init__(
        self,
        planner: OffloadPlanner,
        scenario: Scenario,
        device: Device,
        trace_time: Callable[[], float],
        splits: dict[bytes, SplitTail],
        initial: str | None = None,
        hysteresis: float | None = None,
        alpha: float = 0.2,
        min_samples: int = 3,
        peers: frozenset[str] = frozenset(),
    ) -> None:
        from edgeintel.offloading.adapt import AdaptivePolicy

        self.planner = planner
        self.scenario = scenario
        self.device = device
        self.trace_time = trace_time
        self.splits = splits
        self.policy = AdaptivePolicy(
            planner.settings.hysteresis if hysteresis is None else hysteresis, initial
        )
        self.cloud = scenario.cloud.name
        nodes = {e.name for e in scenario.edge_servers} - {device.attach}
        others = {d.name for d in scenario.expand_devices()} - {device.name}
        self.peers = frozenset(peers)
        self.excluded = frozenset(nodes | (others - self.peers))
        self._options: dict[Any, list[Option]] = {}
        self.switches: list[tuple[float, str | None, str, str]] = []
        self.decisions: dict[str, int] = {}
        self.alpha = alpha
        self.min_samples = min_samples
        self.measured: dict[str, tuple[float, int]] = {}  # label -> (EWMA ms, samples)
        self._latency = str(planner.settings.objective) == "latency"

    def observe_latency(self, label: str, ms: float) -> None:
        """An offloaded request under option ``label`` took ``ms`` end to end."""
        mean, n = self.measured.get(label, (ms, 0))
        self.measured[label] = (mean + self.alpha * (ms - mean) if n else ms, n + 1)

    def _valued(self, opts: list[Option]) -> list[Option]:
        if not self._latency or not self.measured:
            return opts
        from dataclasses import replace

        out = []
        for o in opts:
            mean, n = self.measured.get(o.label, (0.0, 0))
            out.append(replace(o, value=mean) if n >= self.min_samples else o)
        return out

    def _state(self, t: float) -> tuple[Any, ...]:
        sc = self.scenario
        return (self.device.link.at(t), *(link.at(t) for link in sc.links))

    def options(self, t: float, unreachable: frozenset[str]) -> list[Option]:
        key = (self._state(t), unreachable)
        opts = self._options.get(key)
        if opts is None:
            every = self.planner.options(self.scenario, self.device, t, unreachable | self.excluded)
            opts = [
                o
                for o in every
                if o.tier != "hybrid"
                or (
                    o.target not in self.peers
                    and o.mask is not None
                    and mask_key(o.mask) in self.splits
                )
            ]
            self._options[key] = opts
        return opts

    def decide(self, unreachable: frozenset[str] = frozenset()) -> Decision:
        t = self.trace_time()
        before = len(self.policy.switches)
        opt = self.policy.decide(self._valued(self.options(t, unreachable)), unreachable)
        for sw in self.policy.switches[before:]:
            self.switches.append((round(t, 3), sw.old, sw.new, sw.reason))
        self.decisions[opt.label] = self.decisions.get(opt.label, 0) + 1
        return self.decision(opt)

    def decision(self, opt: Option) -> Decision:
        if opt.tier == "local" or opt.target is None:
            return Decision(ExecutionTier.DEVICE, opt.label)
        if opt.tier == "d2d":  # a neighbour runs the whole model, reached directly
            return Decision(ExecutionTier.D2D, opt.label, opt.target)
        tier = ExecutionTier.CLOUD if opt.target == self.cloud else ExecutionTier.EDGE
        if opt.tier == "hybrid":
            assert opt.mask is not None
            split = self.splits[mask_key(opt.mask)]
            return Decision(tier, opt.label, opt.target, split.tail_model, split.head)
        return Decision(tier, opt.label, opt.target)
