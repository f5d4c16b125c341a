"""Watching a deployed model without labels: drift detectors on devices (docs/lifecycle.md)."""

from edgeintel.monitoring.drift import (
    CORRECTIONS,
    DRIFT_DETECTORS,
    DriftConfig,
    DriftMonitor,
    DriftState,
    alpha_per_test,
    ks_batch,
    ks_pvalue,
    ks_statistic,
    mmd2_rbf,
)

__all__ = [
    "CORRECTIONS",
    "DRIFT_DETECTORS",
    "DriftConfig",
    "DriftMonitor",
    "DriftState",
    "alpha_per_test",
    "ks_batch",
    "ks_pvalue",
    "ks_statistic",
    "mmd2_rbf",
]
