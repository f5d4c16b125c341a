"""Simulator arithmetic at the settings' bounds (issue 19): every task is accounted for,
no energy is negative, no time overflows int64."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from edgeintel.scenario import parse_scenario
from edgeintel.sim.api import simulate
from edgeintel.sim.settings import SimSettings
from edgeintel.sim.state import DROP_BATTERY, DROP_OUTAGE, DROP_QUEUE, SKIPPED

from .conftest import busy_scenario


def _check_accounting(res: object) -> None:
    r = res.records  # type: ignore[attr-defined]
    place, done, t_arr = r["place"], r["done"], r["t_arr"]
    known = {SKIPPED, DROP_BATTERY, DROP_QUEUE, DROP_OUTAGE, 0, 1, 2}
    assert set(np.unique(place).tolist()) <= known
    completed = (place >= 0) & (done >= 0)
    unfinished = (place >= 0) & (done < 0)
    dropped = np.isin(place, [SKIPPED, DROP_BATTERY, DROP_QUEUE, DROP_OUTAGE])
    assert int(completed.sum() + unfinished.sum() + dropped.sum()) == place.size
    assert (done[completed] >= t_arr[completed]).all()
    assert (r["energy"] >= 0).all()
    assert res.summary()["energy_j"] >= 0  # type: ignore[attr-defined]


@pytest.mark.parametrize(("median_ms", "sigma"), [(1e6, 5.0), (50.0, 5.0), (5.0, 0.5)])
def test_request_overhead_at_its_bounds_keeps_every_task(median_ms: float, sigma: float) -> None:
    """``request_overhead_sigma`` is at most 5 and the draw is clipped at the horizon: at
    the largest settings no overhead overflows int64 (the issue's sigma 1000 gave -8.3e9 J
    and lost tasks from the accounting)."""
    sc = busy_scenario()
    base = (sc.settings.sim or SimSettings()).model_dump()
    st = SimSettings.model_validate(
        {**base, "request_overhead_ms": median_ms, "request_overhead_sigma": sigma}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "invalid value encountered in cast"
        res = simulate(sc, st)
    _check_accounting(res)
    assert res.model.task_overhead_ns is not None
    assert res.model.task_overhead_ns.min() >= 0
    assert res.model.task_overhead_ns.max() <= res.model.horizon_ns


def test_largest_battery_is_never_flat() -> None:
    """``battery_j`` at its bound (1e12 J, counted in uJ as int64) does not overflow: no task
    is dropped for a flat battery (the issue's 1e30 made every task 'flat battery')."""
    sc = busy_scenario()
    raw = sc.model_dump(mode="json", exclude_none=True)
    for prof in raw["device_profiles"].values():
        prof["battery_j"] = 1e12
    big = parse_scenario(raw)
    res = simulate(big, big.settings.sim)
    _check_accounting(res)
    assert res.summary()["dropped_battery"] == 0
    with pytest.raises(Exception, match="battery_j"):
        raw["device_profiles"]["phone"]["battery_j"] = 1e13
        parse_scenario(raw)
