"""Caching: skip redundant work on devices, reuse results on edge servers, place content.

* ``filter``: device-side redundancy filter (Reducto-style frame differences,
  statistical distances for sensor windows) with an auto-tuned threshold;
* ``detectors``: OpenCV object counters used as per-frame reference models;
* ``result_cache``: the edge server's exact + approximate (ANN, H-kNN) result cache;
* ``redis_cache``: the exact tier shared by edge servers on Redis (optional extra);
* ``reuse``: cross-device reuse replay on a shared-scene stream;
* ``policies``: replacement policies behind one registry, Belady's OPT;
* ``placement``: placement across base stations with cooperation, LP bound, model caching.

Stands on ``scenario``, ``data``, ``models`` and ``inference``; nothing above.
A lazy face (``edgeintel.lazy``): each name loads its module on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeintel.lazy import lazy_face

if TYPE_CHECKING:
    from edgeintel.caching.filter import (
        FEATURES,
        FRAME_FEATURES,
        SENSOR_FEATURES,
        AdaptiveFilter,
        FilterRun,
        RedundancyFilter,
        TuneReport,
        filter_stream,
        prepare,
        run_filter,
        tune_filter,
    )
    from edgeintel.caching.placement import (
        Delivery,
        Placement,
        TieredPlacement,
        choose_models,
        evaluate_delivery,
        evaluate_tiered_delivery,
        greedy_placement,
        lp_placement,
        popularity_placement,
        tiered_placement,
        zipf_demand,
    )
    from edgeintel.caching.policies import (
        LIBCACHESIM_POLICIES,
        POLICIES,
        CachePolicy,
        make_policy,
        miss_ratio,
        next_use,
        opt_hits,
        simulate,
    )
    from edgeintel.caching.redis_cache import RedisResultCache, SharedCacheStats
    from edgeintel.caching.result_cache import (
        CacheStats,
        Lookup,
        ResultCache,
        ResultCacheConfig,
        content_key,
    )
    from edgeintel.caching.reuse import ReuseReport, downsample_vector, replay_reuse, shared_views
    from edgeintel.caching.settings import CachingSettings

__all__ = [
    "FEATURES",
    "FRAME_FEATURES",
    "LIBCACHESIM_POLICIES",
    "POLICIES",
    "SENSOR_FEATURES",
    "AdaptiveFilter",
    "CachePolicy",
    "CacheStats",
    "CachingSettings",
    "Delivery",
    "FilterRun",
    "Lookup",
    "Placement",
    "RedisResultCache",
    "RedundancyFilter",
    "ResultCache",
    "ResultCacheConfig",
    "ReuseReport",
    "SharedCacheStats",
    "TieredPlacement",
    "TuneReport",
    "choose_models",
    "content_key",
    "downsample_vector",
    "evaluate_delivery",
    "evaluate_tiered_delivery",
    "filter_stream",
    "greedy_placement",
    "lp_placement",
    "make_policy",
    "miss_ratio",
    "next_use",
    "opt_hits",
    "popularity_placement",
    "prepare",
    "replay_reuse",
    "run_filter",
    "shared_views",
    "simulate",
    "tiered_placement",
    "tune_filter",
    "zipf_demand",
]

__getattr__, __dir__ = lazy_face(__name__, __file__)
