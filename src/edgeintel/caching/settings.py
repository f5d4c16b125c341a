"""``settings.caching`` of a scenario: the redundancy filter, the shared result cache, placement.

Policy and feature names are checked against the registries
(``policies.POLICIES``, ``filter.FEATURES``) when the scenario is loaded.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edgeintel.caching.filter import FEATURES
from edgeintel.caching.policies import POLICIES
from edgeintel.caching.redis_cache import check_redis_url

__all__ = ["CachingSettings", "FilterSettings", "PlacementSettings", "ResultCacheSettings"]

Positive = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(ge=1)]
Fraction = Annotated[float, Field(gt=0, lt=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _known_policy(name: str) -> str:
    if name not in POLICIES:
        raise ValueError(
            f"unknown cache policy {name!r}; expected one of: {', '.join(POLICIES.names())}"
        )
    return name


class FilterSettings(_Strict):
    """Device-side redundancy filter: tune on the first ``profile_fraction`` of each stream.

    ``target`` is the agreement with processing every input, in (0, 1];
    ``features`` (default: all of the stream's kind) are the candidates. With
    ``adapt``, a probe follows ``probe_every`` consecutive skips, and a changed
    result makes the filter process every input until ``raise_after``
    processed inputs in a row agree.
    """

    enabled: bool = True
    target: Annotated[float, Field(gt=0, le=1)] = 0.95
    profile_fraction: Fraction = 0.3
    features: list[str] | None = None
    adapt: bool = True
    probe_every: PositiveInt = 10
    raise_after: PositiveInt = 3
    max_devices: PositiveInt = 4

    @field_validator("features")
    @classmethod
    def _known_features(cls, names: list[str] | None) -> list[str] | None:
        for n in names or []:
            if n not in FEATURES:
                raise ValueError(
                    f"unknown difference feature {n!r}; expected one of: "
                    f"{', '.join(FEATURES.names())}"
                )
        if names is not None and not names:
            raise ValueError("give at least one feature or leave 'features' out")
        return names


class ResultCacheSettings(_Strict):
    """Edge-server result cache shared by its devices (capacities in entries, TTL in s).

    ``backend: redis`` keeps the exact tier in Redis at ``redis_url``, shared by
    every edge server (bounded by ``exact_capacity``, LRU); the approximate tier
    stays in each server's process. ``memory`` (default) keeps both in process.
    """

    enabled: bool = True
    backend: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    capacity: PositiveInt = 512
    exact_capacity: PositiveInt = 4096
    k: PositiveInt = 5
    min_votes: PositiveInt = 2
    homogeneity: Annotated[float, Field(gt=0, le=1)] = 1.0
    max_distance: Positive = 0.1
    ttl_s: Positive | None = None
    policy: str = "lru"
    requests: PositiveInt = 2000
    noise: Annotated[float, Field(ge=0)] = 0.03

    _policy = field_validator("policy")(_known_policy)

    @field_validator("redis_url")
    @classmethod
    def _url(cls, url: str) -> str:
        return check_redis_url(url)

    @model_validator(mode="after")
    def _votes(self) -> ResultCacheSettings:
        if self.min_votes > self.k:
            raise ValueError(f"min_votes ({self.min_votes}) cannot exceed k ({self.k})")
        return self


class PlacementSettings(_Strict):
    """Placement of items of ``item_mb`` at base stations (and devices) under their ``cache_mb``.

    Fetch latencies in ms: ``device_ms`` from a device's own cache (devices whose
    profile has ``cache_mb`` > 0), ``local_ms`` from its station, ``neighbour_ms``
    from a linked station, ``cloud_ms`` over the backhaul.
    """

    enabled: bool = True
    items: PositiveInt = 2000
    item_mb: Positive = 10.0
    zipf_alpha: Positive = 0.8
    locality: Annotated[float, Field(ge=0, le=1)] = 0.3
    requests: PositiveInt = 5000
    device_ms: Annotated[float, Field(ge=0)] = 0.0
    local_ms: Annotated[float, Field(ge=0)] = 5.0
    neighbour_ms: Annotated[float, Field(ge=0)] = 20.0
    cloud_ms: Annotated[float, Field(ge=0)] = 100.0

    @model_validator(mode="after")
    def _order(self) -> PlacementSettings:
        if not self.device_ms <= self.local_ms <= self.neighbour_ms <= self.cloud_ms:
            raise ValueError(
                "latencies must satisfy device_ms <= local_ms <= neighbour_ms <= cloud_ms"
            )
        return self


class CachingSettings(_Strict):
    """The caching stage; ``policies`` are compared on the scenario's request trace."""

    enabled: bool = True
    filter: FilterSettings = FilterSettings()
    result_cache: ResultCacheSettings = ResultCacheSettings()
    placement: PlacementSettings = PlacementSettings()
    policies: list[str] = ["lru", "fifo", "lfu", "arc", "s3fifo", "sieve"]

    @field_validator("policies")
    @classmethod
    def _known_policies(cls, names: list[str]) -> list[str]:
        if not names:
            raise ValueError("give at least one cache policy")
        return [_known_policy(n) for n in names]
