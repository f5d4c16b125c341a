"""Real sensor datasets for regression and anomaly detection, read from registry packages.

* ``solar_sites`` (regression, short-horizon forecasting): the typical meteorological
  year (TMY) files that pvlib ships for three US weather stations; from the last 24
  hourly readings of a station, forecast the next hour's global horizontal irradiance.
* ``shuttle_valves`` (anomaly detection): the Statlog Shuttle sensor readings of NASA's
  Space Shuttle radiator subsystem as river ships them (ODDS benchmark form): 9
  readings per record; anomalies are records taken in abnormal valve states.

Nothing is downloaded: each loader reads files inside an installed package (the
``datasets`` extra) and names the extra when it is missing.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from edgeintel.data.datasets import DATASETS, Dataset, Modality, Target
from edgeintel.errors import DataError, MissingExtraError
from edgeintel.extras import hint

__all__ = ["SOLAR_CHANNELS", "SOLAR_SITES", "package_data", "solar_windows"]

SHUTTLE_FEATURES = [f"f{k}" for k in range(1, 10)]


def package_data(package: str, *parts: str, what: str) -> Path:
    """Path of a data file inside an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(hint(package, what))
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    if not path.is_file():
        raise DataError(f"{what}: bundled file not found: {path}")
    return path


# --------------------------------------------------------------------------- solar_sites

SOLAR_SITES = (
    ("greensboro-nc", "723170TYA.CSV"),
    ("sand-point-ak", "703165TY.csv"),
    ("miami-fl", "12839.tm2"),
)
"""(site, file in pvlib/data): TMY3 (NSRDB 1991-2005) and TMY2 (NSRDB 1961-1990)."""

SOLAR_CHANNELS = (
    "ghi",  # global horizontal irradiance, W/m^2
    "dni",  # direct normal irradiance, W/m^2
    "dhi",  # diffuse horizontal irradiance, W/m^2
    "ghi_extra_next",  # extraterrestrial horizontal irradiance one hour ahead, W/m^2
    "temp_air",  # dry-bulb temperature, deg C
    "relative_humidity",  # %
    "pressure",  # station pressure, mbar
    "wind_speed",  # m/s
    "total_cloud",  # total sky cover, tenths
)
"""Channels of a ``solar_sites`` window. ``ghi_extra_next`` is astronomy (the sun's
position), known in advance, so the window carries the forecast hour's value."""

WINDOW_H = 24


@functools.lru_cache(maxsize=8)
def _read_site(path: Path) -> np.ndarray:
    """(8760, channels) hourly readings of one TMY file in ``SOLAR_CHANNELS`` order, with
    ``ghi_extra_next`` still unshifted (the hour's own extraterrestrial value); read once
    per process (read-only)."""
    out = _parse_site(path)
    out.setflags(write=False)
    return out


def _parse_site(path: Path) -> np.ndarray:
    from pvlib.iotools import read_tmy2, read_tmy3

    if path.suffix.lower() == ".tm2":
        df, _ = read_tmy2(str(path))
        cols = ["GHI", "DNI", "DHI", "ETR", "DryBulb", "RHum", "Pressure", "Wspd", "TotCld"]
        out = df[cols].to_numpy(dtype=np.float64, copy=True)
        out[:, 4] /= 10.0  # TMY2 stores tenths of a degree and of a metre per second
        out[:, 7] /= 10.0
        return out
    df, _ = read_tmy3(str(path), map_variables=True)
    cols = [
        "ghi",
        "dni",
        "dhi",
        "ghi_extra",
        "temp_air",
        "relative_humidity",
        "pressure",
        "wind_speed",
        "TotCld (tenths)",
    ]
    return df[cols].to_numpy(dtype=np.float64)


def solar_windows(
    hourly: np.ndarray, window: int = WINDOW_H
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forecasting windows of one site's hourly readings (``SOLAR_CHANNELS`` order).

    Sample ``t`` holds hours ``t-window+1 .. t`` (channels first, shape ``(C, window)``),
    its ``ghi_extra_next`` channel holds hours ``t-window+2 .. t+1``, and its target is
    hour ``t+1``'s GHI in kW/m^2. Only forecast hours with the sun above the horizon
    (extraterrestrial irradiance > 0) are kept: at night the answer is known to be 0.
    Returns ``(x, y, hour)`` with ``hour`` the forecast hour's index in the year.
    """
    n = len(hourly)
    extra_next = np.append(hourly[1:, 3], hourly[0, 3])  # hour t+1's value at hour t
    series = hourly.copy()
    series[:, 3] = extra_next
    hours = np.arange(window - 1, n - 1)
    keep = hourly[hours + 1, 3] > 0
    hours = hours[keep]
    idx = hours[:, None] + np.arange(-window + 1, 1)[None, :]
    x = series[idx].transpose(0, 2, 1)
    y = hourly[hours + 1, 0] / 1000.0
    return x.astype(np.float32), y.astype(np.float32), hours + 1


@DATASETS.register("solar_sites")
def _solar_sites(**_: Any) -> Dataset:
    what = "dataset 'solar_sites'"
    xs, ys, groups = [], [], []
    for k, (_site, name) in enumerate(SOLAR_SITES):
        hourly = _read_site(package_data("pvlib", "data", name, what=what))
        if not np.isfinite(hourly).all():
            raise DataError(f"pvlib/data/{name}: readings contain missing values")
        x, y, _hours = solar_windows(hourly)
        xs.append(x)
        ys.append(y)
        groups.append(np.full(len(y), k))
    return Dataset(
        name="solar_sites",
        x=np.concatenate(xs),
        y=np.concatenate(ys),
        classes=["ghi_next_hour"],
        modality=Modality.TIMESERIES,
        description="Next-hour solar irradiance forecasting at three US weather stations "
        "(Greensboro NC, Sand Point AK, Miami FL): typical meteorological year hourly "
        "records (NSRDB TMY3/TMY2, measured and modelled, shipped with pvlib); 24 h of 9 "
        "channels in, the next daylight hour's global horizontal irradiance (kW/m^2) out",
        sampling_rate_hz=1 / 3600,
        groups=np.concatenate(groups),
        source="pvlib/data TMY3 723170TYA.CSV, 703165TY.csv and TMY2 12839.tm2",
        extra={
            "channels": list(SOLAR_CHANNELS),
            "sites": [s for s, _ in SOLAR_SITES],
            "unit": "kW/m^2",
            "sequential": True,
            "standardize": "per_channel",
        },
        target=Target.VALUE,
    )


# --------------------------------------------------------------------------- shuttle_valves


@DATASETS.register("shuttle_valves")
def _shuttle_valves(**_: Any) -> Dataset:
    import pandas as pd

    path = package_data("river", "datasets", "shuttle.csv.gz", what="dataset 'shuttle_valves'")
    df = pd.read_csv(path)
    missing = sorted({*SHUTTLE_FEATURES, "anomaly"} - set(df.columns))
    if missing:
        raise DataError(f"{path}: expected columns f1..f9 and anomaly; missing {missing}")
    x = df[SHUTTLE_FEATURES].to_numpy(dtype=np.float32)[:, None, :]
    return Dataset(
        name="shuttle_valves",
        x=x,
        y=df["anomaly"].to_numpy(dtype=np.int64),
        classes=["normal", "anomaly"],
        modality=Modality.TABULAR,
        description="Equipment monitoring: 49,097 records of 9 sensor readings from NASA's "
        "Space Shuttle radiator subsystem (UCI Statlog Shuttle in the ODDS anomaly form, "
        "shipped with river); 7.2% were taken in abnormal flow/bypass valve states",
        source="river/datasets/shuttle.csv.gz",
        extra={"columns": list(SHUTTLE_FEATURES), "standardize": "per_feature"},
        target=Target.ANOMALY,
    )
