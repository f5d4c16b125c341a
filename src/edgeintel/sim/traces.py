"""Device capability and availability traces, sampled per device from the seed.

In the spirit of FedScale's client traces: devices of one class are not
identical. Each simulated device gets a compute-speed factor and a bandwidth
factor (log-normal, median 1, so the class's nominal value is the median
device) and an on/off availability process (alternating exponential periods;
the first period is on with the stationary probability ``on / (on + off)``).

Availability is stored compactly as toggle times per device (CSR layout), and
``available`` answers "is device d on at time t" for whole arrays at once.
Times are integer nanoseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgeintel.sim.settings import TraceSettings

__all__ = ["NEVER", "NS", "DeviceTraces", "sample_traces"]

NS = 1_000_000_000
"""Nanoseconds per second: the simulator's clock is integer nanoseconds."""
NEVER = 2**62
"""A time (ns) after every simulated one."""


@dataclass(frozen=True)
class DeviceTraces:
    """Per-device factors and on/off toggles (ns); ``toggle_ptr[d]:toggle_ptr[d+1]`` are d's."""

    speed_factor: np.ndarray  # float64 (n,)
    bandwidth_factor: np.ndarray  # float64 (n,)
    start_on: np.ndarray  # bool (n,)
    toggle_ptr: np.ndarray  # int64 (n + 1,)
    toggle_ns: np.ndarray  # int64, sorted within each device
    horizon_ns: int

    @property
    def num_devices(self) -> int:
        return int(self.speed_factor.shape[0])

    def _keys(self, dev: np.ndarray, t_ns: np.ndarray) -> np.ndarray:
        return dev.astype(np.int64) * (self.horizon_ns + 1) + t_ns

    def available(self, dev: np.ndarray, t_ns: np.ndarray) -> np.ndarray:
        """Whether each ``dev[i]`` is on at ``t_ns[i]`` (a toggle at t counts from t on)."""
        dev = np.asarray(dev, dtype=np.int64)
        t = np.minimum(np.asarray(t_ns, dtype=np.int64), self.horizon_ns)
        if self.toggle_ns.size == 0:
            return self.start_on[dev].copy()
        owner = np.repeat(np.arange(self.num_devices, dtype=np.int64), np.diff(self.toggle_ptr))
        keys = self._keys(owner, self.toggle_ns)
        count = np.searchsorted(keys, self._keys(dev, t), side="right") - self.toggle_ptr[dev]
        return self.start_on[dev] ^ (count % 2 == 1)

    def next_toggle_ns(self, dev: int, t_ns: int) -> int:
        """The first toggle of ``dev`` after ``t_ns`` (``NEVER`` when none before the horizon:
        the device keeps its state to the end)."""
        lo, hi = int(self.toggle_ptr[dev]), int(self.toggle_ptr[dev + 1])
        seg = self.toggle_ns[lo:hi]
        i = int(np.searchsorted(seg, t_ns, side="right"))
        return int(seg[i]) if i < seg.size else NEVER

    def on_fraction(self) -> float:
        """Share of device-time spent on over the horizon."""
        total = 0
        for d in range(self.num_devices):
            seg = self.toggle_ns[self.toggle_ptr[d] : self.toggle_ptr[d + 1]]
            edges = np.concatenate([[0], seg, [self.horizon_ns]])
            spans = np.diff(edges)
            total += int(spans[0 if self.start_on[d] else 1 :: 2].sum())
        return total / max(1, self.num_devices * self.horizon_ns)


def sample_traces(
    n: int, settings: TraceSettings, horizon_ns: int, rng: np.random.Generator
) -> DeviceTraces:
    """Draw ``n`` devices' speed and bandwidth factors and on/off toggles up to ``horizon_ns``."""
    speed = rng.lognormal(0.0, settings.speed_sigma, n) if settings.speed_sigma > 0 else np.ones(n)
    bw = (
        rng.lognormal(0.0, settings.bandwidth_sigma, n)
        if settings.bandwidth_sigma > 0
        else np.ones(n)
    )
    if settings.mean_off_s <= 0:
        return DeviceTraces(
            speed,
            bw,
            np.ones(n, dtype=bool),
            np.zeros(n + 1, dtype=np.int64),
            np.zeros(0, dtype=np.int64),
            horizon_ns,
        )
    on_s, off_s = settings.mean_on_s, settings.mean_off_s
    start_on = rng.random(n) < on_s / (on_s + off_s)
    cycle = on_s + off_s
    m = 2 * math.ceil(horizon_ns / NS / cycle) + 8
    # column j is an on-period when (j even) == start_on
    means = np.where(
        (np.arange(m)[None, :] % 2 == 0) == start_on[:, None], on_s * NS, off_s * NS
    ).astype(np.float64)
    spans = rng.exponential(1.0, (n, m)) * means
    ends = np.cumsum(spans, axis=1)
    while np.any(ends[:, -1] < horizon_ns):  # rare: many short periods; extend every row
        extra = rng.exponential(1.0, (n, m)) * np.where(
            (np.arange(m, 2 * m)[None, :] % 2 == 0) == start_on[:, None], on_s * NS, off_s * NS
        )
        ends = np.concatenate([ends, ends[:, -1:] + np.cumsum(extra, axis=1)], axis=1)
        m = ends.shape[1]
    toggles = np.ceil(ends).astype(np.int64)
    keep = toggles < horizon_ns
    ptr = np.zeros(n + 1, dtype=np.int64)
    ptr[1:] = np.cumsum(keep.sum(axis=1))
    return DeviceTraces(speed, bw, start_on, ptr, toggles[keep], horizon_ns)
