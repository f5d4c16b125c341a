"""Offloading: profile, cost model, partitioning, split execution, fleet placement."""
