"""Cross-device result reuse: devices that observe the same scenes share one result cache.

``shared_views`` builds the request stream of such a deployment from real
inputs: each request is one of ``scenes`` base inputs (chosen by Zipf
popularity shared by all devices) as seen by one device, i.e. shifted by up
to one pixel, rescaled in brightness and with sensor noise of its own.
``replay_reuse`` sends the stream through a ``ResultCache``: on a miss the
device's model runs and its result is inserted; on a hit the cached result is
reused and judged against what the model would have answered.

A *reuse opportunity* is a request whose scene some earlier request already
put into the cache and that is still cached; ``harnessed`` is the fraction
of opportunities answered from the cache (FoggyCache's measure).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeintel.caching.result_cache import ResultCache, ResultCacheConfig
from edgeintel.errors import ConfigError, DataError

__all__ = ["ReuseReport", "SharedStream", "downsample_vector", "replay_reuse", "shared_views"]


def downsample_vector(x: np.ndarray, size: int = 8) -> np.ndarray:
    """Feature vector of an input: average-pooled to ``size`` per spatial axis, unit L2 norm.

    Images (C, H, W) pool to (C, size, size); sensor windows (C, L) to (C, size).
    """
    a = np.asarray(x, dtype=np.float32)
    if a.ndim == 3:
        c, h, w = a.shape
        if h % size or w % size:
            import cv2

            a = np.stack([cv2.resize(ch, (size, size), interpolation=cv2.INTER_AREA) for ch in a])
        else:
            a = a.reshape(c, size, h // size, size, w // size).mean(axis=(2, 4))
    elif a.ndim == 2:
        c, n = a.shape
        cut = n - n % size
        a = a[:, :cut].reshape(c, size, cut // size).mean(axis=2)
    else:
        raise DataError(f"cannot make a feature vector from an input of shape {a.shape}")
    v = a.reshape(-1)
    return v / (np.linalg.norm(v) + 1e-8)


@dataclass
class SharedStream:
    """Requests in arrival order: which device, which scene, and the device's view of it."""

    device: np.ndarray
    scene: np.ndarray
    inputs: np.ndarray


def shared_views(
    x: np.ndarray,
    requests: int,
    devices: int,
    alpha: float = 0.8,
    noise: float = 0.03,
    shift: int = 0,
    seed: int | np.random.Generator = 0,
) -> SharedStream:
    """``requests`` views of the scenes ``x`` (N, C, H, W) or (N, C, L) by ``devices`` devices."""
    if requests < 1 or devices < 1:
        raise ConfigError(f"requests and devices must be >= 1, got {requests} and {devices}")
    if len(x) == 0:
        raise DataError("no scenes to observe")
    rng = np.random.default_rng(seed)
    z = 1.0 / np.arange(1, len(x) + 1) ** alpha
    scene = rng.permutation(len(x))[rng.choice(len(x), size=requests, p=z / z.sum())]
    device = rng.integers(0, devices, size=requests)
    views = np.empty((requests, *x.shape[1:]), dtype=np.float32)
    axes = tuple(range(1, x.ndim - 1))
    for r in range(requests):
        v = x[scene[r]]
        for ax in axes:
            v = np.roll(v, int(rng.integers(-shift, shift + 1)), axis=ax)
        v = v * rng.uniform(0.9, 1.1) + rng.normal(0, noise, size=v.shape)
        views[r] = v
    return SharedStream(device, scene, views)


@dataclass
class ReuseReport:
    """Outcome of a replay: reuse opportunities harnessed, accuracy of reuse, time saved."""

    requests: int
    opportunities: int
    harnessed: int
    reused: int
    reused_correct: int
    exact_hits: int
    approx_hits: int
    model_ms: float
    lookup_ms: float
    stats: dict[str, Any]

    @property
    def harnessed_fraction(self) -> float:
        return self.harnessed / max(1, self.opportunities)

    @property
    def reuse_accuracy(self) -> float:
        return self.reused_correct / self.reused if self.reused else 1.0

    @property
    def latency_saved_ms(self) -> float:
        """Mean per request: model time skipped on hits minus lookup time on every request."""
        return (self.reused * self.model_ms) / self.requests - self.lookup_ms

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "opportunities": self.opportunities,
            "harnessed_fraction": round(self.harnessed_fraction, 4),
            "reused": self.reused,
            "reuse_accuracy": round(self.reuse_accuracy, 4),
            "exact_hits": self.exact_hits,
            "approx_hits": self.approx_hits,
            "model_ms": round(self.model_ms, 4),
            "lookup_ms_mean": round(self.lookup_ms, 4),
            "latency_saved_ms_mean": round(self.latency_saved_ms, 4),
            "cache": self.stats,
        }


def replay_reuse(
    stream: SharedStream,
    model: Callable[[np.ndarray], Any],
    config: ResultCacheConfig,
    model_ms: float,
    vectorize: Callable[[np.ndarray], np.ndarray] = downsample_vector,
    truth: list[Any] | None = None,
    same: Callable[[Any, Any], bool] | None = None,
    windows: int = 3,
) -> ReuseReport:
    """Replay ``stream`` through a fresh shared cache; ``model(input)`` gives a device's result.

    ``truth`` (the model's result for every request, when precomputed) saves
    calling ``model`` for judging hits. The request index is the clock (s). ``same``
    (the task kind's agreement rule; ``None``: equality) decides the cache's votes and
    whether a reused result counts as correct. The replay runs ``windows`` times, each
    through a fresh cache (the same decisions every time), and each request's lookup
    keeps its fastest time: a load spike on a shared machine only slows a window down,
    as for every other latency (the model's ``model_ms`` is a median of warm runs).
    """
    if windows < 1:
        raise ValueError(f"windows must be >= 1, got {windows}")
    counts: tuple[int, int, int, int, dict[str, Any], int, int] | None = None
    fastest = np.full(len(stream.scene), np.inf)
    for _ in range(windows):
        times, once = _replay_once(stream, model, config, vectorize, truth, same)
        fastest = np.minimum(fastest, times)
        counts = once if counts is None else counts
    assert counts is not None
    opportunities, harnessed, reused, correct, stats, exact, approx = counts
    n = len(stream.scene)
    return ReuseReport(
        n,
        opportunities,
        harnessed,
        reused,
        correct,
        exact,
        approx,
        model_ms,
        float(fastest.sum()) * 1e3 / max(1, n),
        stats,
    )


def _replay_once(
    stream: SharedStream,
    model: Callable[[np.ndarray], Any],
    config: ResultCacheConfig,
    vectorize: Callable[[np.ndarray], np.ndarray],
    truth: list[Any] | None,
    same: Callable[[Any, Any], bool] | None,
) -> tuple[np.ndarray, tuple[int, int, int, int, dict[str, Any], int, int]]:
    """One replay through a fresh cache: each request's lookup time (s) and the counts
    (opportunities, harnessed, reused, correct, cache stats, exact hits, approx hits)."""
    cache = ResultCache(config, same)
    agree = same if same is not None else (lambda a, b: bool(a == b))
    scene_of: dict[int, int] = {}
    opportunities = harnessed = reused = correct = 0
    times = np.zeros(len(stream.scene))
    for r in range(len(stream.scene)):
        x = stream.inputs[r]
        vec = vectorize(x)
        alive = {scene_of[e] for e in scene_of if e in cache}
        opportunity = int(stream.scene[r]) in alive
        opportunities += opportunity
        t0 = time.perf_counter()
        hit = cache.lookup(float(r), content=x, vector=vec)
        times[r] = time.perf_counter() - t0
        want = truth[r] if truth is not None else None
        if hit.hit:
            want = model(x) if want is None else want
            reused += 1
            harnessed += opportunity
            ok = bool(agree(hit.result, want))
            correct += ok
            cache.stats.judge(ok)
        else:
            result = model(x) if want is None else want
            entry = cache.insert(result, float(r), content=x, vector=vec)
            if entry is not None:
                scene_of[entry] = int(stream.scene[r])
        for e in [e for e in scene_of if e not in cache]:
            del scene_of[e]
    s = cache.stats
    return times, (opportunities, harnessed, reused, correct, s.to_json(), s.exact_hits,
                   s.approx_hits)  # fmt: skip
