"""Whether the redundancy filter pays on a device, and the result cache on an edge server:
their own cost against the model they save.

The filter costs every input a preparation and a comparison; it saves the model on the
inputs it skips. On a device whose model is as cheap as the comparison (a tiny model on a
microcontroller), it costs more than it saves at any realistic skip rate, and then it
stands aside: the device runs the model on every input and the report says why.

The decision is taken where the threshold is tuned, on the profiling segment's skip
fraction (never on the inputs it is then measured on). Both costs are timed on this
machine; a device's ``compute_speed`` scales them alike, so the rule holds on the device.
"""

from __future__ import annotations

import numpy as np

from edgeintel.caching.features import FEATURES, prepare
from edgeintel.latency import time_calls
from edgeintel.threads import thread_limit

__all__ = ["aside_reason", "cache_aside_reason", "cache_pays", "filter_cost_ms", "filter_pays"]


def filter_cost_ms(xs: np.ndarray, feature: str, inputs: int = 16) -> float:
    """The filter's cost per input on this machine (ms): prepare the input and compare it
    with the previous one by ``feature``, timed warm in windows until they agree, like
    every other latency (a cold, once-timed cost charged the first device the warm-up)."""
    fn = FEATURES.get(feature)
    sample = xs[: max(2, min(len(xs), inputs))]

    def call() -> None:
        prev = prepare(sample[0])
        for x in sample[1:]:
            cur = prepare(x)
            fn(prev, cur)
            prev = cur

    with thread_limit(1):  # one thread, as device speeds are relative to (settings.threads)
        stats = time_calls(call, runs=5, warmup=2, windows=3)
    return stats.p50_ms / (len(sample) - 1)  # one extra prepare: errs towards cost


def filter_pays(skip_fraction: float, filter_ms: float, model_ms: float) -> bool:
    """True when skipping ``skip_fraction`` of inputs saves more model time (``model_ms``
    per input) than the filter costs on every input (``filter_ms``): the expected device
    time saved per input, ``skip_fraction x model_ms - filter_ms``, is positive."""
    return skip_fraction * model_ms - filter_ms > 0


def aside_reason(skip_fraction: float, filter_ms: float, model_ms: float) -> str:
    """The one sentence a filter that stands aside gives, with the numbers that decided."""
    return (
        f"stands aside: skipping {skip_fraction:.0%} of inputs (profiling segment) would save "
        f"{skip_fraction * model_ms:.3g} ms of model per input, less than its own "
        f"{filter_ms:.3g} ms per input"
    )


def cache_pays(lookup_ms: float, model_ms: float) -> bool:
    """True when an edge server's result-cache lookup (``lookup_ms``, paid on every request)
    costs less than the model it saves on a hit (``model_ms``): otherwise no reuse rate can
    pay, and the cache stands aside. Decided from the two timed costs alone, never from the
    hit ratio it is then measured on."""
    return lookup_ms < model_ms


def cache_aside_reason(lookup_ms: float, model_ms: float) -> str:
    """The one sentence a result cache that stands aside gives, with the numbers."""
    return (
        f"stands aside: a lookup ({lookup_ms:.3g} ms, on every request) costs at least the "
        f"model it would save ({model_ms:.3g} ms), whatever the reuse"
    )
