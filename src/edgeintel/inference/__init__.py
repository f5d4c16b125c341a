"""Edge inference: latency measurement (compression toolkit lands here too)."""

from edgeintel.inference.latency import LatencyStats, measure_latency, scale_latency

__all__ = ["LatencyStats", "measure_latency", "scale_latency"]
