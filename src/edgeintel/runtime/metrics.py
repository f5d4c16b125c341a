"""Prometheus metrics of a serving node, with label values from a bounded set only.

A label value never comes from the URL or a request body as given: a model label is a
name the repository serves (or ``""`` when the request named none it serves), a device
label is a name from the tokens table or, with authentication off, one of the first
``max_names`` device names seen (``_other`` afterwards). So unauthenticated or unknown
requests cannot grow the registry or the /metrics page.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["CONTENT_TYPE_LATEST", "OTHER", "BoundedNames", "ServerMetrics"]

OTHER = "_other"


class BoundedNames:
    """The first ``limit`` distinct names seen; later new names map to ``OTHER``."""

    def __init__(self, limit: int = 256) -> None:
        self.limit = limit
        self._names: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, name: str) -> str:
        if name in self._names:
            return name
        with self._lock:
            if len(self._names) < self.limit:
                self._names.add(name)
                return name
        return OTHER


class ServerMetrics:
    """The node's Prometheus registry: requests, latency, batches, queue, cache, links,
    relayed requests, per-device requests and ingested results."""

    def __init__(self, max_devices: int = 256) -> None:
        r = self.registry = CollectorRegistry()
        self.device_name = BoundedNames(max_devices)
        self.requests = Counter(
            "edgeintel_requests",
            "Requests by endpoint kind, model and status",
            ["endpoint", "model", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "edgeintel_infer_latency_seconds",
            "Server-side infer latency",
            ["model"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
            registry=r,
        )
        self.batch = Histogram(
            "edgeintel_batch_size",
            "Rows per ONNX Runtime call",
            ["model"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.queue = Gauge("edgeintel_queue_depth", "Requests waiting", ["model"], registry=r)
        self.cache_hits = Counter(
            "edgeintel_cache_hits", "Result cache hits by tier", ["model", "tier"], registry=r
        )
        self.cache_lookups = Counter(
            "edgeintel_cache_lookups", "Result cache lookups", ["model"], registry=r
        )
        self.link_bytes = Counter(
            "edgeintel_link_bytes",
            "Bytes over this node's upstream link by direction (up = towards the upstream)",
            ["link", "direction"],
            registry=r,
        )
        self.relayed = Counter(
            "edgeintel_relayed_requests", "Requests relayed upstream", ["status"], registry=r
        )
        self.device = Counter(
            "edgeintel_device_requests", "Requests per device", ["device"], registry=r
        )
        self.results = Counter(
            "edgeintel_results_ingested",
            "Forwarded results stored / duplicates",
            ["device", "kind"],
            registry=r,
        )

    def request(self, endpoint: str, model: str, status: int) -> None:
        """One answered request; ``model`` must be a served model's name or ``""``."""
        self.requests.labels(endpoint, model, str(status)).inc()

    def device_request(self, device: str) -> None:
        self.device.labels(self.device_name(device)).inc()

    def ingested(self, device: str, stored: int, duplicates: int) -> None:
        d = self.device_name(device)
        self.results.labels(d, "stored").inc(stored)
        self.results.labels(d, "duplicate").inc(duplicates)

    def link(self, up: int, down: int) -> None:
        self.link_bytes.labels("upstream", "up").inc(up)
        self.link_bytes.labels("upstream", "down").inc(down)

    def relay_status(self, status: int | None) -> None:
        """A relayed request's upstream status (None: unreachable)."""
        label = "unreachable" if status is None else str(status if 100 <= status < 600 else 0)
        self.relayed.labels(label).inc()

    def watch_queue(self, model: str, depth: Callable[[], float]) -> None:
        self.queue.labels(model).set_function(depth)

    def render(self) -> bytes:
        return generate_latest(self.registry)
