"""``settings.caching`` of a scenario: the redundancy filter, the shared result cache, placement.

Policy and feature names are checked against the registries (``policies.POLICIES``,
``filter.FEATURES``) when the scenario is loaded; every size has an upper bound (a
trace, a catalogue or a cache that would not fit in memory is refused at ``validate``).
The Redis URL is checked here by its form only; whether a server answers there is
checked by ``edgeintel validate`` (``redis_cache.ping_redis``).
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from edgeintel.caching.features import FEATURES, FRAME_FEATURES, SENSOR_FEATURES
from edgeintel.caching.policies import POLICIES
from edgeintel.errors import ConfigError, FieldError
from edgeintel.schema import Strict, registry_name

__all__ = [
    "REDIS_SCHEMES",
    "CachingSettings",
    "FilterSettings",
    "PlacementSettings",
    "ResultCacheSettings",
    "check_redis_url",
]

Fraction = Annotated[float, Field(gt=0, lt=1)]
LatencyMs = Annotated[float, Field(ge=0, le=1e6)]
PolicyName = Annotated[str, registry_name(POLICIES)]
FeatureName = Annotated[str, registry_name(FEATURES)]

REDIS_SCHEMES = ("redis", "rediss", "unix")


def check_redis_url(url: str) -> str:
    """A Redis URL: ``redis://host:port/db``, ``rediss://...`` (TLS) or ``unix:///path``."""
    parts = urlsplit(url)
    if parts.scheme not in REDIS_SCHEMES:
        raise ConfigError(f"redis_url must start with redis://, rediss:// or unix://, got {url!r}")
    if parts.scheme == "unix" and not parts.path:
        raise ConfigError(f"redis_url {url!r} names no socket path")
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigError(f"redis_url {url!r} names no host")
    try:
        parts.port  # noqa: B018  (raises on a port that is not a number in 0..65535)
    except ValueError:
        raise ConfigError(f"redis_url {url!r} has an invalid port") from None
    return url


def _unique(names: list[str], what: str) -> list[str]:
    """``names`` unless one is given twice (a duplicate would be compared with itself)."""
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ValueError(f"{what} {n!r} is given twice; name each once")
        seen.add(n)
    return names


class FilterSettings(Strict):
    """Device-side redundancy filter: tune on the first ``profile_fraction`` of each stream.

    ``target`` is the agreement with processing every input, in (0, 1];
    ``features`` (default: all of the stream's kind: pixel, area, edge, hist for
    images, ks, meanstd, maxabs for sensor windows and readings) are the candidates.
    With ``adapt``, a probe follows ``probe_every`` consecutive skips, and a changed
    result makes the filter process every input until ``raise_after`` processed inputs
    in a row agree.
    For a task kind that raises alerts (anomaly), a threshold is refused if replaying
    the profiling segment at it, or at ``alert_margin`` x it, hides any alert behind a
    reused result (the larger the margin, the fewer readings skipped and alerts missed).
    For a kind whose results have a margin to a change of answer (an anomaly score's
    distance to the alarm threshold), a result is not reused on an input whose difference
    times the segment's sensitivity (``sensitivity_factor`` x the ``sensitivity_quantile``
    of |change of margin| / difference over consecutive readings) reaches its margin.
    """

    enabled: bool = True
    target: Annotated[float, Field(gt=0, le=1)] = 0.95
    profile_fraction: Fraction = 0.3
    features: list[FeatureName] | None = None
    adapt: bool = True
    probe_every: Annotated[int, Field(ge=1, le=10_000)] = 10
    raise_after: Annotated[int, Field(ge=1, le=10_000)] = 3
    max_devices: Annotated[int, Field(ge=1, le=100_000)] = 4
    alert_margin: Annotated[float, Field(ge=1, le=1000)] = 2.0
    sensitivity_quantile: Annotated[float, Field(gt=0, le=1)] = 0.95
    sensitivity_factor: Annotated[float, Field(ge=1, le=1000)] = 2.0

    @field_validator("features")
    @classmethod
    def _some_features(cls, names: list[str] | None) -> list[str] | None:
        if names is not None and not names:
            raise ValueError("give at least one feature or leave 'features' out")
        return None if names is None else _unique(names, "feature")

    def check_modality(self, images: bool) -> None:
        """The features suit the stream: frame features on images, sensor features on
        windows (a frame feature on a window fails inside OpenCV). ``FieldError``
        below ``settings.caching.filter`` otherwise."""
        kind, fits = ("images", FRAME_FEATURES) if images else ("sensor windows", SENSOR_FEATURES)
        wrong = [f for f in self.features or [] if f in FRAME_FEATURES + SENSOR_FEATURES]
        wrong = [f for f in wrong if f not in fits]
        if wrong:
            raise FieldError(
                ("features",),
                f"{', '.join(map(repr, wrong))} cannot compare {kind} (this scenario's data); "
                f"expected one of: {', '.join(fits)}",
            )


class ResultCacheSettings(Strict):
    """Edge-server result cache shared by its devices (capacities in entries, TTL in s).

    ``backend: redis`` keeps the exact tier in Redis at ``redis_url``, shared by
    every edge server (bounded by ``exact_capacity``, LRU); the approximate tier
    stays in each server's process. ``memory`` (default) keeps both in process.
    """

    enabled: bool = True
    backend: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    capacity: Annotated[int, Field(ge=1, le=1_000_000)] = 512
    exact_capacity: Annotated[int, Field(ge=1, le=10_000_000)] = 4096
    k: Annotated[int, Field(ge=1, le=1000)] = 5
    min_votes: Annotated[int, Field(ge=1, le=1000)] = 2
    homogeneity: Annotated[float, Field(gt=0, le=1)] = 1.0
    max_distance: Annotated[float, Field(gt=0, le=1e6)] = 0.1
    ttl_s: Annotated[float, Field(gt=0, le=1e8)] | None = None
    policy: PolicyName = "lru"
    requests: Annotated[int, Field(ge=1, le=1_000_000)] = 2000
    noise: Annotated[float, Field(ge=0, le=10)] = 0.03

    @field_validator("redis_url")
    @classmethod
    def _url(cls, url: str) -> str:
        return check_redis_url(url)

    @model_validator(mode="after")
    def _votes(self) -> ResultCacheSettings:
        if self.min_votes > self.k:
            raise ValueError(f"min_votes ({self.min_votes}) cannot exceed k ({self.k})")
        return self


class PlacementSettings(Strict):
    """Placement of items of ``item_mb`` at base stations (and devices) under their ``cache_mb``.

    ``items``: catalogue size (at most 10**6), ``requests`` per station (at most 10**6).
    Fetch latencies in ms: ``device_ms`` from a device's own cache (devices whose
    profile has ``cache_mb`` > 0), ``local_ms`` from its station, ``neighbour_ms``
    from a linked station, ``cloud_ms`` over the backhaul.
    """

    enabled: bool = True
    items: Annotated[int, Field(ge=1, le=1_000_000)] = 2000
    item_mb: Annotated[float, Field(ge=1e-6, le=1e6)] = 10.0
    zipf_alpha: Annotated[float, Field(gt=0, le=10)] = 0.8
    locality: Annotated[float, Field(ge=0, le=1)] = 0.3
    requests: Annotated[int, Field(ge=1, le=1_000_000)] = 5000
    device_ms: LatencyMs = 0.0
    local_ms: LatencyMs = 5.0
    neighbour_ms: LatencyMs = 20.0
    cloud_ms: LatencyMs = 100.0

    @model_validator(mode="after")
    def _order(self) -> PlacementSettings:
        if not self.device_ms <= self.local_ms <= self.neighbour_ms <= self.cloud_ms:
            raise ValueError(
                "latencies must satisfy device_ms <= local_ms <= neighbour_ms <= cloud_ms"
            )
        return self


class CachingSettings(Strict):
    """The caching stage; ``policies`` are compared on the scenario's request trace."""

    enabled: bool = True
    filter: FilterSettings = FilterSettings()
    result_cache: ResultCacheSettings = ResultCacheSettings()
    placement: PlacementSettings = PlacementSettings()
    policies: list[PolicyName] = Field(
        default_factory=lambda: ["lru", "fifo", "lfu", "arc", "s3fifo", "sieve"]
    )

    @field_validator("policies")
    @classmethod
    def _some_policies(cls, names: list[str]) -> list[str]:
        if not names:
            raise ValueError("give at least one cache policy")
        return _unique(names, "cache policy")
