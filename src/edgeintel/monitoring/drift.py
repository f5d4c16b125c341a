"""Label-free drift detection on a device's input and output streams.

A device keeps a bounded ring of its last ``window`` inputs (and model outputs) and,
every ``stride`` inputs, tests that window against its training reference with each
detector of ``DRIFT_DETECTORS``:

* ``ks``: a two-sample Kolmogorov-Smirnov test per feature (features: the top
  principal components of the reference), the per-feature p-values combined by a
  multiple-testing correction of ``CORRECTIONS`` (Bonferroni or Benjamini-Hochberg);
* ``mmd``: the squared maximum mean discrepancy with an RBF kernel (bandwidth by the
  median heuristic on the reference) between the window and a fixed reference sample;
* ``confidence``: a KS test of the model's top-class confidence in the window against
  its confidence on reference inputs (a shift of the outputs, not the inputs).

The user states a false-alarm rate in alarms per device-hour at an input rate; that is
a false-alarm probability per test (``alpha_per_test``), and each detector's threshold
is the matching upper quantile of its score over windows bootstrapped from a held-out
half of the reference (calibration on reference data only; no shifted data is seen).
Arrays in, arrays out: numpy and scipy only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import kolmogorov

from edgeintel.errors import ConfigError, DataError
from edgeintel.registry import Registry

__all__ = [
    "CORRECTIONS",
    "DRIFT_DETECTORS",
    "ConfidenceDetector",
    "Detector",
    "DriftConfig",
    "DriftMonitor",
    "DriftState",
    "KSDetector",
    "MMDDetector",
    "alpha_per_test",
    "ks_batch",
    "ks_pvalue",
    "ks_statistic",
    "mmd2_rbf",
]

_TINY = 1e-300


# --------------------------------------------------------------------------- statistics
def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample KS statistic: the largest gap between the empirical CDFs of ``a`` and ``b``."""
    a = np.sort(np.asarray(a, dtype=np.float64).ravel())
    b = np.sort(np.asarray(b, dtype=np.float64).ravel())
    if a.size == 0 or b.size == 0:
        raise DataError("ks_statistic needs two non-empty samples")
    grid = np.concatenate([a, b])
    fa = np.searchsorted(a, grid, side="right") / a.size
    fb = np.searchsorted(b, grid, side="right") / b.size
    return float(np.max(np.abs(fa - fb)))


def ks_pvalue(d: float, n: int, m: int) -> float:
    """Asymptotic p-value of a KS statistic ``d`` between samples of sizes ``n`` and ``m``."""
    en = math.sqrt(n * m / (n + m))
    return float(kolmogorov(en * d))


def mmd2_rbf(x: np.ndarray, y: np.ndarray, gamma: float) -> float:
    """Biased (V-statistic) squared MMD between samples ``x`` (n, d) and ``y`` (m, d) with the
    kernel ``exp(-gamma * |u - v|^2)``."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    y = np.atleast_2d(np.asarray(y, dtype=np.float64))
    return float(_kmean(x, x, gamma) + _kmean(y, y, gamma) - 2.0 * _kmean(x, y, gamma))


def _sqdist(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    d = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * (x @ y.T)
    return np.maximum(d, 0.0)


def _kmean(x: np.ndarray, y: np.ndarray, gamma: float) -> float:
    return float(np.exp(-gamma * _sqdist(x, y)).mean())


def ks_batch(windows: np.ndarray, ref_sorted: np.ndarray) -> np.ndarray:
    """KS statistics of each row of ``windows`` (B, n) against a sorted sample (m,): (B,).

    Between two distinct window values the window's ECDF is flat, so the largest gap is at a
    window value, from the right (``<=``) or the left (``<``); ties within a row counted."""
    w = np.sort(np.asarray(windows, dtype=np.float64), axis=1)
    b, n = w.shape
    m = ref_sorted.size
    pos = np.broadcast_to(np.arange(n), (b, n))
    new = np.ones((b, n), dtype=bool)  # first of a run of equal values
    new[:, 1:] = w[:, 1:] != w[:, :-1]
    last = np.ones((b, n), dtype=bool)  # last of a run
    last[:, :-1] = new[:, 1:]
    left = np.maximum.accumulate(np.where(new, pos, 0), axis=1)  # count of values < w_i
    right = np.minimum.accumulate(np.where(last, pos + 1, n)[:, ::-1], axis=1)[:, ::-1]
    fr_right = np.searchsorted(ref_sorted, w, side="right") / m
    fr_left = np.searchsorted(ref_sorted, w, side="left") / m
    gap = np.maximum(np.abs(right / n - fr_right), np.abs(left / n - fr_left))
    return np.asarray(gap.max(axis=1))


# --------------------------------------------------------------------------- corrections
Correction = Callable[[np.ndarray], float]
CORRECTIONS: Registry[Correction] = Registry("multiple-testing correction")


@CORRECTIONS.register("bonferroni")
def _bonferroni(p: np.ndarray) -> float:
    """Family-wise p-value: ``k x`` the smallest of ``k`` p-values (capped at 1)."""
    return float(min(1.0, p.size * float(np.min(p))))


@CORRECTIONS.register("fdr")
def _fdr(p: np.ndarray) -> float:
    """Benjamini-Hochberg (Simes) global p-value: ``min_i p_(i) k / i``."""
    s = np.sort(p)
    return float(min(1.0, float(np.min(s * s.size / np.arange(1, s.size + 1)))))


# --------------------------------------------------------------------------- detectors
class Detector:
    """A drift score on a window (higher: more drift); ``source`` says what it watches."""

    source = "input"

    def fit(self, reference: np.ndarray, rng: np.random.Generator) -> None:
        raise NotImplementedError

    def score(self, window: np.ndarray) -> float:
        raise NotImplementedError

    def scores(self, windows: np.ndarray) -> np.ndarray:
        """Scores of a batch of windows (B, window, ...): (B,); detectors may vectorize it."""
        return np.array([self.score(w) for w in windows])


DRIFT_DETECTORS: Registry[Callable[[DriftConfig], Detector]] = Registry("drift detector")


@DRIFT_DETECTORS.register("ks")
class KSDetector(Detector):
    """Per-feature two-sample KS, p-values corrected for ``k`` features; score ``-log10 p``."""

    def __init__(self, cfg: DriftConfig) -> None:
        self.correct = CORRECTIONS.get(cfg.correction)
        self.ref = np.empty((0, 0))

    def fit(self, reference: np.ndarray, rng: np.random.Generator) -> None:
        self.ref = np.sort(np.asarray(reference, dtype=np.float64).reshape(len(reference), -1), 0)

    def score(self, window: np.ndarray) -> float:
        return float(self.scores(np.asarray(window)[None])[0])

    def scores(self, windows: np.ndarray) -> np.ndarray:
        w = np.asarray(windows, dtype=np.float64)
        w = w.reshape(w.shape[0], w.shape[1], -1)
        n, m = w.shape[1], self.ref.shape[0]
        en = math.sqrt(n * m / (n + m))
        p = np.stack(
            [kolmogorov(en * ks_batch(w[:, :, j], self.ref[:, j])) for j in range(w.shape[2])],
            axis=1,
        )
        return np.array([-math.log10(max(self.correct(row), _TINY)) for row in p])


@DRIFT_DETECTORS.register("mmd")
class MMDDetector(Detector):
    """Squared MMD (RBF kernel, median-heuristic bandwidth) against ``mmd_reference`` points
    of the reference, drawn once; the reference-reference term is computed at fit time."""

    def __init__(self, cfg: DriftConfig) -> None:
        self.size = cfg.mmd_reference
        self.ref = np.empty((0, 0))
        self.gamma = 1.0
        self.kyy = 0.0

    def fit(self, reference: np.ndarray, rng: np.random.Generator) -> None:
        r = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
        if len(r) > self.size:
            r = r[rng.choice(len(r), self.size, replace=False)]
        self.ref = r
        d2 = _sqdist(r, r)[np.triu_indices(len(r), 1)]
        med = float(np.median(d2)) if d2.size else 1.0
        self.gamma = 1.0 / max(med, 1e-12)
        self.kyy = _kmean(r, r, self.gamma)

    def score(self, window: np.ndarray) -> float:
        w = np.asarray(window, dtype=np.float64).reshape(len(window), -1)
        g = self.gamma
        return _kmean(w, w, g) + self.kyy - 2.0 * _kmean(w, self.ref, g)

    def scores(self, windows: np.ndarray) -> np.ndarray:
        w = np.asarray(windows, dtype=np.float64)
        w = w.reshape(w.shape[0], w.shape[1], -1)
        r, g = self.ref, self.gamma
        sq = (w * w).sum(2)
        dww = sq[:, :, None] + sq[:, None, :] - 2.0 * np.einsum("bid,bjd->bij", w, w)
        dwr = sq[:, :, None] + (r * r).sum(1)[None, None, :] - 2.0 * (w @ r.T)
        kww = np.exp(-g * np.maximum(dww, 0.0)).mean((1, 2))
        kwr = np.exp(-g * np.maximum(dwr, 0.0)).mean((1, 2))
        return np.asarray(kww + self.kyy - 2.0 * kwr)


@DRIFT_DETECTORS.register("confidence")
class ConfidenceDetector(Detector):
    """KS test of the model's top-class confidence in the window against the reference's."""

    source = "output"

    def __init__(self, cfg: DriftConfig) -> None:
        self.ref = np.empty(0)

    def fit(self, reference: np.ndarray, rng: np.random.Generator) -> None:
        self.ref = np.sort(np.asarray(reference, dtype=np.float64).ravel())

    def score(self, window: np.ndarray) -> float:
        return float(self.scores(np.asarray(window)[None])[0])

    def scores(self, windows: np.ndarray) -> np.ndarray:
        w = np.asarray(windows, dtype=np.float64)
        w = w.reshape(w.shape[0], -1)
        n, m = w.shape[1], self.ref.size
        p = kolmogorov(math.sqrt(n * m / (n + m)) * ks_batch(w, self.ref))
        return np.asarray(-np.log10(np.maximum(p, _TINY)))


# --------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class DriftConfig:
    """What a device watches and how often it may cry wolf.

    ``false_alarms_per_hour`` at ``input_hz`` inputs per second, one test every ``stride``
    inputs on the last ``window`` inputs; inputs are projected on ``features`` principal
    components of the reference; ``calibration_windows`` bootstrap windows set each threshold.
    """

    detectors: tuple[str, ...] = ("ks", "mmd", "confidence")
    window: int = 100
    stride: int = 25
    input_hz: float = 1.0
    false_alarms_per_hour: float = 1.0
    features: int = 8
    correction: str = "bonferroni"
    mmd_reference: int = 200
    calibration_windows: int = 4000
    calibration_splits: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.detectors:
            raise ConfigError("drift.detectors: name at least one detector")
        for name in self.detectors:
            DRIFT_DETECTORS.check(name)
        CORRECTIONS.check(self.correction)
        for name in (
            "window",
            "stride",
            "features",
            "mmd_reference",
            "calibration_windows",
            "calibration_splits",
        ):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"drift.{name} must be >= 1, got {getattr(self, name)}")
        if self.window < 2:
            raise ConfigError(f"drift.window must be >= 2, got {self.window}")
        if not self.input_hz > 0:
            raise ConfigError(f"drift.input_hz must be > 0 inputs/s, got {self.input_hz}")
        if not self.false_alarms_per_hour > 0:
            raise ConfigError(
                f"drift.false_alarms_per_hour must be > 0, got {self.false_alarms_per_hour}"
            )
        a = alpha_per_test(self)
        if a >= 1.0:
            raise ConfigError(
                f"drift.false_alarms_per_hour {self.false_alarms_per_hour} allows an alarm on "
                "every test; lower it or test more often (stride)"
            )
        if self.calibration_splits > self.calibration_windows:
            raise ConfigError(
                f"drift.calibration_splits ({self.calibration_splits}) must be <= "
                f"calibration_windows ({self.calibration_windows})"
            )
        if self.calibration_windows * a < 2.0:
            need = math.ceil(2.0 / a)
            raise ConfigError(
                f"drift.calibration_windows must be >= {need} to calibrate a false-alarm "
                f"probability of {a:.2e} per test, got {self.calibration_windows}"
            )


def alpha_per_test(cfg: DriftConfig) -> float:
    """False-alarm probability per test and detector: the hourly budget over the tests per
    hour (``input_hz x 3600 / stride``), split evenly between the detectors (Bonferroni)."""
    tests_per_hour = cfg.input_hz * 3600.0 / cfg.stride
    return cfg.false_alarms_per_hour / tests_per_hour / len(cfg.detectors)


@dataclass(frozen=True)
class DriftState:
    """The monitor after one input: ``tested`` when this input closed a test; ``fired`` the
    detectors whose score passed their threshold on it; ``alarms`` counts alarms raised (a
    firing test after a quiet one: what a device reports), ``alarmed_tests`` every firing
    test (overlapping windows make one odd stretch fire several in a row)."""

    inputs: int
    tested: bool
    drift: bool
    fired: tuple[str, ...]
    scores: dict[str, float] = field(default_factory=dict)
    alarms: int = 0
    alarmed_tests: int = 0
    first_alarm: int | None = None


# --------------------------------------------------------------------------- the monitor
class DriftMonitor:
    """Streaming drift monitor of one device: ``update(x, output) -> DriftState``.

    ``reference`` holds training inputs (n, ...) and ``reference_outputs`` the model's class
    probabilities (n, classes) or confidences (n,) on them (needed by output detectors; take
    them on data the model did not train on: a model is surer of its training data). The
    features and detectors are fitted on the whole reference, thresholds cross-fitted on
    halves of it (``_calibrate``). Memory: two rings of ``window`` rows, whatever the stream.
    """

    def __init__(
        self,
        cfg: DriftConfig,
        reference: np.ndarray,
        reference_outputs: np.ndarray | None = None,
    ) -> None:
        self.cfg = cfg
        rng = np.random.default_rng([cfg.seed, 0xD1F7])
        x = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
        if len(x) < 2 * cfg.window:
            raise DataError(
                f"drift reference has {len(x)} inputs; need at least 2 x window ({2 * cfg.window})"
            )
        self.detectors = {n: DRIFT_DETECTORS.get(n)(cfg) for n in cfg.detectors}
        conf = None
        if any(d.source == "output" for d in self.detectors.values()):
            if reference_outputs is None or len(reference_outputs) != len(x):
                raise DataError(
                    "drift: an output detector needs reference_outputs, one per reference input"
                )
            conf = confidence_of(reference_outputs)
        self.mean = x.mean(0)
        _, _, vt = np.linalg.svd(x - self.mean, full_matrices=False)
        self.proj = vt[: min(cfg.features, vt.shape[0])].T
        feats = self.features(x)
        self.thresholds: dict[str, float] = {}
        alpha = alpha_per_test(cfg)
        splits = [rng.permutation(len(x)) for _ in range(cfg.calibration_splits)]
        for name, det in self.detectors.items():
            src = feats if det.source == "input" else conf
            assert src is not None
            self.thresholds[name] = _calibrate(name, src, splits, cfg, alpha, rng)
            det.fit(src, rng)
        self._xring = np.zeros((cfg.window, self.proj.shape[1]))
        self._oring = np.zeros(cfg.window)
        self._n = 0
        self._alarms = 0
        self._tests = 0
        self._firing = False
        self._first: int | None = None

    def features(self, x: np.ndarray) -> np.ndarray:
        """Project inputs (n, ...) on the reference's principal components: (n, features)."""
        flat = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        return np.asarray((flat - self.mean) @ self.proj)

    def update(self, x: np.ndarray, output: Any = None) -> DriftState:
        """Take one input (its shape as in the reference) and the model's output on it (class
        probabilities or a confidence; needed by output detectors) and test when due."""
        cfg = self.cfg
        k = self._n % cfg.window
        self._xring[k] = self.features(np.asarray(x)[None])[0]
        if output is not None:
            self._oring[k] = confidence_of(np.asarray(output)[None])[0]
        elif any(d.source == "output" for d in self.detectors.values()):
            raise DataError("drift: update() needs the model output for the output detectors")
        self._n += 1
        if self._n < cfg.window or (self._n - cfg.window) % cfg.stride:
            return DriftState(self._n, False, False, (), {}, self._alarms, self._tests, self._first)
        scores: dict[str, float] = {}
        fired = []
        for name, det in self.detectors.items():
            ring = self._xring if det.source == "input" else self._oring
            scores[name] = det.score(ring)
            if scores[name] > self.thresholds[name]:
                fired.append(name)
        if fired:
            self._tests += 1
            self._alarms += not self._firing
            if self._first is None:
                self._first = self._n
        self._firing = bool(fired)
        return DriftState(
            self._n, True, bool(fired), tuple(fired), scores, self._alarms, self._tests,
            self._first,
        )  # fmt: skip

    def reset(self) -> None:
        """Forget the stream (after a retrain or a new model version); thresholds are kept."""
        self._n = 0
        self._alarms = 0
        self._tests = 0
        self._firing = False
        self._first = None


def confidence_of(outputs: np.ndarray) -> np.ndarray:
    """Top-class confidence per output: the max of each probability row, or the value itself."""
    o = np.asarray(outputs, dtype=np.float64)
    return o.max(axis=1) if o.ndim == 2 else o.ravel()


def _calibrate(
    name: str,
    src: np.ndarray,
    splits: list[np.ndarray],
    cfg: DriftConfig,
    alpha: float,
    rng: np.random.Generator,
) -> float:
    """Upper ``alpha`` quantile of detector ``name``'s score under no drift, cross-fitted: for
    each random split of the reference, a copy fitted on one half scores windows drawn with
    replacement from the other half. Pooling the splits puts the variation of a finite
    reference into the threshold (one fixed split under-states it: too many false alarms)."""
    per = cfg.calibration_windows // len(splits)
    scores = []
    for order in splits:
        half = len(order) // 2
        det = DRIFT_DETECTORS.get(name)(cfg)
        det.fit(src[order[:half]], rng)
        pool = src[order[half:]]
        idx = rng.integers(0, len(pool), size=(per, cfg.window))
        for chunk in np.array_split(idx, max(1, per // 250)):
            scores.append(det.scores(pool[chunk]))
    return float(np.quantile(np.concatenate(scores), 1.0 - alpha, method="higher"))
