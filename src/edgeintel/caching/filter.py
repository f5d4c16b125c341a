"""Data redundancy on the device: skip inputs too similar to the last processed one.

A device compares each new input with the last input it processed through a
cheap difference feature and skips the input (reusing the last result) when
the difference is at most a threshold, in the spirit of Reducto (SIGCOMM'20):

* frames: ``pixel`` (fraction of pixels whose grey level changed by more than
  21/255), ``area`` (fraction of the frame covered by changed regions after
  dilation), ``edge`` (fraction of Canny edge pixels that differ) and ``hist``
  (Bhattacharyya distance of grey-level histograms);
* sensor windows and readings: ``ks`` (largest per-channel two-sample
  Kolmogorov-Smirnov statistic), ``meanstd`` (largest per-channel shift of mean and
  standard deviation, in units of the pooled standard deviation) and ``maxabs``
  (largest change of any single value, in the readings' units: the one that suits a
  record of separate sensors, whose values are not samples of one distribution).

``tune_filter`` chooses the feature and threshold on a short profiling
segment, where every input is processed, as the largest threshold whose
agreement with processing every input meets ``target`` when the filter that
will run (with its online adaptation) is replayed over the segment (the reason
is kept in the returned ``TuneReport``). ``run_filter`` carries it to unseen
inputs and, with ``adapt``, adapts online when content changes: it processes
one probe after ``probe_every`` consecutive skips, and any processed input
whose result differs from the one being reused drops the threshold to
``lower`` x the tuned value (0: process every input while the output is
changing) until ``raise_after`` processed inputs in a row agree again.

Whether two results "agree" is the task kind's rule (``same``: equal labels for a
classifier, values within a tolerance for regression, the same side of the threshold
for an anomaly detector; ``TaskKind.same``); by default results are compared with ``==``.
A kind that raises alerts (``urgent``: an anomaly alarm) adds a hard rule to tuning: a
candidate that hides any alert of the profiling segment behind a reused ordinary result
is refused, whatever its overall agreement (rare alarms barely move an agreement
fraction, and a hidden alarm is the one error a monitoring device must not make), and
it must hide none when replayed at ``alert_margin`` times its threshold either: the
segment holds few alarms, and a threshold that only just hides none of them hides
unseen ones (an empirical safety factor, measured in docs/tasks.md).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeintel.caching.features import (
    FEATURES,
    FRAME_FEATURES,
    SENSOR_FEATURES,
    prepare,
)
from edgeintel.errors import ConfigError, DataError

__all__ = [
    "FEATURES",
    "AdaptiveFilter",
    "FilterRun",
    "FilterStep",
    "RedundancyFilter",
    "TuneReport",
    "check_target",
    "filter_stream",
    "hidden_alerts",
    "margin_sensitivity",
    "prepare",
    "run_filter",
    "simulate_threshold",
    "tune_filter",
]

Same = Callable[[Any, Any], bool]  # do two results count as the same answer?
Urgent = Callable[[Any], bool]  # is a result an alert that must never be hidden?
Margin = Callable[[Any], float | None]  # signed distance of a result to a change of answer


def check_target(target: float) -> float:
    """An agreement target must lie in (0, 1]."""
    if not 0 < target <= 1:
        raise ConfigError(f"agreement target must be in (0, 1], got {target}")
    return float(target)


@dataclass
class RedundancyFilter:
    """Skip an input whose ``feature`` difference to the last processed input is <= threshold."""

    feature: str
    threshold: float
    last: np.ndarray | None = None

    def __post_init__(self) -> None:
        self._fn = FEATURES.get(self.feature)
        if not np.isfinite(self.threshold) or self.threshold < 0:
            raise ConfigError(f"filter threshold must be >= 0, got {self.threshold}")

    def difference(self, prepared: np.ndarray) -> float:
        """Difference to the last processed input (inf when none was processed yet)."""
        if self.last is None:
            return float("inf")
        if prepared.shape != self.last.shape:
            raise DataError(
                f"input shape {prepared.shape} differs from the stream's {self.last.shape}"
            )
        return self._fn(prepared, self.last)

    def should_process(self, prepared: np.ndarray) -> tuple[bool, float]:
        """(process?, difference); a processed input becomes the new reference."""
        d = self.difference(prepared)
        process = d > self.threshold
        if process:
            self.last = prepared
        return process, d

    def reset(self) -> None:
        self.last = None


def _equal(a: Any, b: Any) -> bool:
    return bool(a == b)


def _agrees(same: Same, reused: Any, reference: Any) -> bool:
    """``same`` on a reused result, where there is one yet (None: nothing to reuse)."""
    return reused is not None and bool(same(reused, reference))


def hidden_alerts(outputs: Sequence[Any], reference: Sequence[Any], urgent: Urgent) -> int:
    """How many alerts of ``reference`` (every input's own result) the filtered
    ``outputs`` do not carry: the reused result was not an alert (or there was none)."""
    return sum(
        bool(urgent(r)) and (o is None or not urgent(o))
        for o, r in zip(outputs, reference, strict=True)
    )


def simulate_threshold(
    prepared: Sequence[np.ndarray],
    outputs: Sequence[Any],
    feature: str,
    threshold: float,
    same: Same = _equal,
) -> tuple[float, float]:
    """(fraction skipped, agreement with ``outputs`` by ``same``) of a fixed threshold."""
    f = RedundancyFilter(feature, threshold)
    current: Any = None
    skipped = agree = 0
    for x, ref in zip(prepared, outputs, strict=True):
        process, _ = f.should_process(x)
        if process:
            current = ref
        else:
            skipped += 1
        agree += _agrees(same, current, ref)
    n = len(prepared)
    return skipped / n, agree / n


def margin_sensitivity(
    prepared: Sequence[np.ndarray],
    outputs: Sequence[Any],
    feature: str,
    margin: Margin,
    quantile: float = 0.95,
    factor: float = 2.0,
) -> float | None:
    """How fast results' margins move with the feature's difference on a profiling segment
    (margin units per feature unit): ``factor`` x the ``quantile`` of |change of margin| /
    difference over consecutive inputs that differ (None: no result has a margin, or no
    two consecutive inputs differ). A reused result whose margin is at most this times an
    input's difference might have changed its answer on that input."""
    fn = FEATURES.get(feature)
    diffs = np.array([fn(b, a) for a, b in itertools.pairwise(prepared)])
    return _sensitivity(diffs, [margin(o) for o in outputs], quantile, factor)


def _sensitivity(
    diffs: np.ndarray, margins: Sequence[float | None], quantile: float, factor: float
) -> float | None:
    """``margin_sensitivity`` from the consecutive differences ``diffs`` (len(margins) - 1)."""
    ratios = [
        abs(mb - ma) / d
        for d, ma, mb in zip(diffs, margins, margins[1:], strict=False)
        if ma is not None and mb is not None and d > 0
    ]
    return float(factor * np.quantile(ratios, quantile)) if ratios else None


@dataclass
class TuneReport:
    """How the threshold was chosen: every candidate's skip and agreement on profiling."""

    feature: str
    threshold: float
    target: float
    profile_inputs: int
    skip_fraction: float
    agreement: float
    reason: str
    candidates: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    hidden_alerts: int | None = None  # on the profiling segment (None: no alert rule)
    sensitivity: float | None = None  # margin units per feature unit (None: no margin rule)

    def to_json(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "threshold": round(self.threshold, 6),
            "target": self.target,
            "profile_inputs": self.profile_inputs,
            "profile_skip_fraction": round(self.skip_fraction, 4),
            "profile_agreement": round(self.agreement, 4),
            "reason": self.reason,
            **({} if self.hidden_alerts is None else {"profile_hidden_alerts": self.hidden_alerts}),
            **({} if self.sensitivity is None else {"sensitivity": round(self.sensitivity, 6)}),
            "best_per_feature": {
                k: max(v, key=lambda r: (self._meets(r), r["skip"]))
                for k, v in self.candidates.items()
                if v
            },
        }

    def _meets(self, row: dict[str, float]) -> bool:
        return row["agreement"] >= self.target and not row.get("hidden", 0)


def tune_filter(
    prepared: Sequence[np.ndarray],
    outputs: Sequence[Any],
    target: float,
    features: Sequence[str] = FRAME_FEATURES,
    candidates: int = 24,
    adapt: bool = False,
    probe_every: int = 10,
    lower: float = 0.0,
    raise_after: int = 3,
    same: Same = _equal,
    urgent: Urgent | None = None,
    alert_margin: float = 2.0,
    margin: Margin | None = None,
    sensitivity_quantile: float = 0.95,
    sensitivity_factor: float = 2.0,
) -> TuneReport:
    """Choose the feature and threshold that skip most while agreeing on >= ``target`` of inputs.

    Candidate thresholds are quantiles of the consecutive differences on the
    profiling segment (``prepared`` with every input's ``outputs``); each is
    replayed with the filter that will run (``run_filter`` with the same
    adaptation settings), since a skip changes what later inputs are compared
    with and adaptation changes what is skipped: tuning a fixed threshold and
    then running it adapted skips far fewer inputs than the segment promised.
    Threshold 0 of the first feature (skip only exact repeats) is the fallback.
    ``same`` judges agreement (the task kind's rule; ``==`` by default). With ``urgent``
    (the kind's alert rule) a candidate must also hide no alert of the segment, replayed
    at its threshold and at ``alert_margin`` x it (the segment holds few alerts: a
    threshold that only just hides none of them hides unseen ones). With ``margin`` (the
    kind's distance of a result to a change of its answer, e.g. an anomaly score's to the
    alarm threshold) each feature's ``margin_sensitivity`` on the segment guards reuse:
    ``AdaptiveFilter`` never reuses a result whose margin a difference could cross.
    """
    check_target(target)
    if len(prepared) < 2:
        raise DataError(f"profiling needs at least 2 inputs, got {len(prepared)}")
    if len(outputs) != len(prepared):
        raise DataError(f"{len(prepared)} profiling inputs but {len(outputs)} outputs")

    def replay(name: str, th: float, sens: float | None) -> tuple[float, float, int]:
        run = run_filter(
            prepared,
            outputs.__getitem__,
            name,
            th,
            outputs,
            adapt,
            probe_every,
            lower,
            raise_after,
            same,
            margin,
            sens,
        )
        hidden = 0 if urgent is None else hidden_alerts(run.outputs, outputs, urgent)
        return run.skip_fraction, float(run.agreement or 0.0), hidden

    table: dict[str, list[dict[str, float]]] = {}
    diffs_of = {
        name: np.array([FEATURES.get(name)(b, a) for a, b in itertools.pairwise(prepared)])
        for name in features
    }
    margins = [None if margin is None else margin(o) for o in outputs]
    sens = {
        name: _sensitivity(diffs, margins, sensitivity_quantile, sensitivity_factor)
        for name, diffs in diffs_of.items()
    }
    best = (features[0], 0.0, *replay(features[0], 0.0, sens[features[0]]))
    for name, diffs in diffs_of.items():
        grid = np.unique(np.quantile(diffs, np.linspace(0, 1, candidates)))
        rows = []
        for th in grid:
            skip, agree, hidden = replay(name, float(th), sens[name])
            rows.append({"threshold": float(th), "skip": skip, "agreement": agree})
            if urgent is not None:
                rows[-1]["hidden"] = hidden
            if urgent is not None and not hidden and th > 0 and alert_margin > 1:
                hidden = replay(name, alert_margin * float(th), sens[name])[2]  # room to spare
            if (
                agree >= target
                and not hidden
                and (skip > best[2] or (skip == best[2] and th < best[1]))
            ):
                best = (name, float(th), skip, agree, hidden)
        table[name] = rows
    name, th, skip, agree, hidden = best
    how = " (replayed with online adaptation)" if adapt else ""
    alarms = " hiding no alert" if urgent is not None else ""
    reason = (
        f"largest skip on the {len(prepared)}-input profiling segment{how} among "
        f"{sum(map(len, table.values()))} (feature, threshold) candidates whose agreement with "
        f"processing every input is >= {target:g}{alarms}: '{name}' difference <= {th:.4g} "
        f"skips {skip:.1%} at {agree:.1%} agreement"
    )
    if agree < target or hidden:
        reason = (
            f"no candidate met the target {target:g}{alarms}; skipping only exact repeats "
            f"({agree:.1%} agreement)"
        )
    return TuneReport(
        name, th, target, len(prepared), skip, agree, reason, table,
        None if urgent is None else hidden, sens[name],
    )  # fmt: skip


@dataclass
class FilterStep:
    """What the filter did with one input."""

    index: int
    processed: bool
    probe: bool
    difference: float
    threshold: float


@dataclass
class FilterRun:
    """Outcome of a filtered stream: decisions, reused outputs, agreement and counts."""

    steps: list[FilterStep]
    outputs: list[Any]
    agreement: float | None
    threshold_start: float
    threshold_end: float

    @property
    def inputs(self) -> int:
        return len(self.steps)

    @property
    def processed(self) -> int:
        return sum(s.processed for s in self.steps)

    @property
    def skipped(self) -> int:
        return self.inputs - self.processed

    @property
    def probes(self) -> int:
        return sum(s.probe for s in self.steps)

    @property
    def skip_fraction(self) -> float:
        return self.skipped / max(1, self.inputs)


class AdaptiveFilter:
    """The device's filter as one stateful policy object: ``decide`` on an input, ``observe``.

    The rule of ``run_filter`` (which drives this object over a recorded
    stream) for a live one: a device calls ``decide(prepared)`` (or
    ``should_process(raw)``, which prepares the input itself) on every input,
    and after processing one, ``observe(result)``; a skipped input reuses
    ``current``. Results are compared with ``same`` (the task kind's rule, ``==`` by
    default), so observe a prediction (a label, a value, a score), not a raw output
    tensor. With ``adapt``, after ``probe_every``
    consecutive skips the next input is processed as a probe; a result that
    differs from the one being reused sets the threshold to ``lower`` x the
    tuned value (0: process every input while the output keeps changing), and
    ``raise_after`` processed inputs in a row that agree restore the tuned value.
    """

    def __init__(
        self,
        feature: str,
        threshold: float,
        adapt: bool = True,
        probe_every: int = 10,
        lower: float = 0.0,
        raise_after: int = 3,
        same: Same = _equal,
        margin: Margin | None = None,
        sensitivity: float | None = None,
    ) -> None:
        if probe_every < 1:
            raise ConfigError(f"probe_every must be >= 1, got {probe_every}")
        if raise_after < 1:
            raise ConfigError(f"raise_after must be >= 1, got {raise_after}")
        if not 0 <= lower <= 1:
            raise ConfigError(f"lower must be in [0, 1], got {lower}")
        self._f = RedundancyFilter(feature, threshold)
        self.tuned = float(threshold)
        self.adapt, self.probe_every = adapt, probe_every
        self.lower, self.raise_after = lower, raise_after
        self.same = same
        self.margin, self.sensitivity = margin, sensitivity
        self.current: Any = None
        self._has_result = self._pending = False
        self._skips = self._agreeing = self._seen = 0

    @property
    def threshold(self) -> float:
        """The threshold in force now (the tuned one, or lowered after a change)."""
        return self._f.threshold

    def decide(self, prepared: np.ndarray) -> FilterStep:
        """Process this (prepared) input, as a regular input or as a probe, or skip it?"""
        process, d = self._f.should_process(prepared)
        process = process or self._could_change(d)
        probe = not process and self.adapt and self._skips >= self.probe_every
        if process or probe:
            self._f.last = prepared
            self._skips = 0
            self._pending = True
        else:
            self._skips += 1
        step = FilterStep(self._seen, process or probe, probe, d, self._f.threshold)
        self._seen += 1
        return step

    def _could_change(self, d: float) -> bool:
        """Could a difference ``d`` move the reused result across its answer's boundary?
        (``sensitivity`` x d reaches the result's ``margin``; never without a margin rule.)"""
        if self.sensitivity is None or self.margin is None or not self._has_result:
            return False
        m = self.margin(self.current)
        return m is not None and self.sensitivity * d >= abs(m)

    def observe(self, result: Any) -> None:
        """The result of the input ``decide`` just chose to process; it is reused from now on."""
        if not self._pending:
            raise RuntimeError("observe() must follow a decide() that processed its input")
        self._pending = False
        if self.adapt and self._has_result:
            if self.same(result, self.current):
                self._agreeing += 1
                if self._agreeing >= self.raise_after:
                    self._f.threshold, self._agreeing = self.tuned, 0
            else:  # the content changed: look at every input until it settles
                self._f.threshold, self._agreeing = self.tuned * self.lower, 0
        self.current, self._has_result = result, True

    def should_process(self, x: np.ndarray) -> bool:
        """``decide`` on a raw input (a frame or a sensor window; ``prepare`` is applied)."""
        return self.decide(prepare(x)).processed


def run_filter(
    prepared: Sequence[np.ndarray],
    model: Callable[[int], Any],
    feature: str,
    threshold: float,
    reference: Sequence[Any] | None = None,
    adapt: bool = False,
    probe_every: int = 10,
    lower: float = 0.0,
    raise_after: int = 3,
    same: Same = _equal,
    margin: Margin | None = None,
    sensitivity: float | None = None,
) -> FilterRun:
    """Filter a stream: ``model(i)`` is called only for processed inputs (and probes).

    The rule is ``AdaptiveFilter``'s: with ``adapt`` the filter adapts online
    when content changes. After ``probe_every`` consecutive skips the next
    input is processed as a probe. Every processed input (probe or not) whose
    result differs from the result being reused sets the threshold to
    ``lower`` x the tuned value (0: process every input while the output keeps
    changing); ``raise_after`` processed inputs in a row whose result agrees
    restore the tuned value. ``reference`` (every input's result, when known)
    gives the agreement of the reused outputs, judged by ``same``.
    """
    f = AdaptiveFilter(
        feature, threshold, adapt, probe_every, lower, raise_after, same, margin, sensitivity
    )
    outputs: list[Any] = []
    steps: list[FilterStep] = []
    for i, x in enumerate(prepared):
        step = f.decide(x)
        if step.processed:
            f.observe(model(i))
            step.threshold = f.threshold
        steps.append(step)
        outputs.append(f.current)
    agreement = None
    if reference is not None:
        agreement = float(
            np.mean([_agrees(same, o, r) for o, r in zip(outputs, reference, strict=True)])
        )
    return FilterRun(steps, outputs, agreement, f.tuned, f.threshold)


def filter_stream(
    prepared: Sequence[np.ndarray],
    outputs: Sequence[Any],
    target: float,
    profile_fraction: float = 0.3,
    features: Sequence[str] | None = None,
    adapt: bool = True,
    probe_every: int = 10,
    raise_after: int = 3,
    same: Same = _equal,
    urgent: Urgent | None = None,
    alert_margin: float = 2.0,
    margin: Margin | None = None,
    sensitivity_quantile: float = 0.95,
    sensitivity_factor: float = 2.0,
) -> tuple[TuneReport, FilterRun]:
    """Tune on the first ``profile_fraction`` of a stream, then filter the rest.

    ``outputs`` are every input's results (the reference). On the filtered
    part they are only read for processed inputs and probes (what a device
    would compute) and to measure agreement. Features default to the frame
    features for 2-D prepared frames and the sensor distances otherwise. ``same`` is the
    agreement rule (the task kind's ``same``; ``==`` by default); ``urgent`` the kind's
    alert rule, which tuning must not break on the profiling segment (``tune_filter``).
    """
    if not 0 < profile_fraction < 1:
        raise ConfigError(f"profile_fraction must be in (0, 1), got {profile_fraction}")
    n = len(prepared)
    k = round(n * profile_fraction)
    if k < 2 or n - k < 1:
        raise DataError(f"a stream of {n} inputs is too short to profile {profile_fraction:.0%}")
    if features is None:
        features = FRAME_FEATURES if prepared[0].dtype == np.uint8 else SENSOR_FEATURES
    report = tune_filter(
        prepared[:k],
        outputs[:k],
        target,
        features,
        adapt=adapt,
        probe_every=probe_every,
        raise_after=raise_after,
        same=same,
        urgent=urgent,
        alert_margin=alert_margin,
        margin=margin,
        sensitivity_quantile=sensitivity_quantile,
        sensitivity_factor=sensitivity_factor,
    )
    run = run_filter(
        prepared[k:],
        lambda i: outputs[k + i],
        report.feature,
        report.threshold,
        reference=outputs[k:],
        adapt=adapt,
        probe_every=probe_every,
        raise_after=raise_after,
        same=same,
        margin=margin,
        sensitivity=report.sensitivity,
    )
    return report, run
