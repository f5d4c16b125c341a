"""``SimResult``: per-task records of a run, its summary figures, time series and rounds."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeintel.network import TIERS
from edgeintel.sim.model import SLOTS, SimModel
from edgeintel.sim.state import DROP_BATTERY, DROP_OUTAGE, DROP_QUEUE, SKIPPED, SimState
from edgeintel.sim.traces import NS

__all__ = ["RECORD_FIELDS", "SimResult"]

RECORD_FIELDS = ("t_arr", "device", "place", "done", "hit", "energy", "bs", "attempts")
"""Per-task record arrays: arrival ns, device, slot (or a negative drop code), completion ns
(-1: none), cache hit, device energy uJ, station (-1: none), upload attempts."""


@dataclass
class SimResult:
    """What a run produced (``summary`` for numbers, ``to_json`` for results.json)."""

    model: SimModel
    engine: str
    records: dict[str, np.ndarray]
    counters: dict[str, int]
    series: dict[str, list[float]]
    rounds: list[dict[str, Any]]
    traffic: dict[str, int]
    cpu_s: float
    wall_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_state(cls, state: SimState, engine: str, cpu_s: float, wall_s: float) -> SimResult:
        records = {
            "t_arr": state.t_arr,
            "device": state.dev_of,
            "place": state.place,
            "done": state.done,
            "hit": state.hit,
            "energy": state.energy,
            "bs": state.bs,
            "attempts": state.attempts,
        }
        counters = {
            "events": state.events,
            "decisions": state.decisions,
            "invalid_actions": state.invalid_actions,
            "handovers": state.handovers,
            "cache_lookups": state.lookups,
            "dead_devices": int(np.count_nonzero(np.asarray(state.battery) <= 0)),
        }
        switches = getattr(state.policy, "switches", None)
        if callable(switches):
            counters["plan_switches"] = int(switches())
        return cls(
            state.model,
            engine,
            records,
            counters,
            state.series,
            state.rounds,
            dict(state.traffic.bytes),
            cpu_s,
            wall_s,
            {"fl_energy_uj": state.fl_energy_uj},
        )

    # ----------------------------------------------------------------- figures
    def latencies_s(self, slot: str | None = None) -> np.ndarray:
        """Latencies (s) of completed tasks, all or of one slot (``local``/``edge``/``cloud``)."""
        r = self.records
        ok = (r["place"] >= 0) & (r["done"] >= 0)
        if slot is not None:
            ok &= r["place"] == SLOTS.index(slot)
        return (r["done"][ok] - r["t_arr"][ok]) / NS

    def summary(self) -> dict[str, float]:
        """Flat numbers: latency percentiles (s) overall and per slot, bytes per tier, counts,
        energy (J), events, CPU seconds."""
        r = self.records
        s = self.model.settings
        place = r["place"]
        out: dict[str, float] = {
            "devices": float(self.model.num_devices),
            "duration_s": float(s.duration_s),
            "tasks": float(place.size),
            "skipped": float(np.count_nonzero(place == SKIPPED)),
            "dropped_battery": float(np.count_nonzero(place == DROP_BATTERY)),
            "dropped_queue": float(np.count_nonzero(place == DROP_QUEUE)),
            "dropped_outage": float(np.count_nonzero(place == DROP_OUTAGE)),
        }
        for name, lat in [("", self.latencies_s())] + [
            (f"_{slot}", self.latencies_s(slot)) for slot in SLOTS
        ]:
            out[f"completed{name}"] = float(lat.size)
            for q in (50, 95, 99):
                out[f"latency_p{q}_s{name}"] = (
                    float(np.percentile(lat, q)) if lat.size else float("nan")
                )
            out[f"latency_mean_s{name}"] = float(lat.mean()) if lat.size else float("nan")
        out |= self._alerts()
        out["cache_hits"] = float(np.count_nonzero(r["hit"]))
        lookups = self.counters.get("cache_lookups", 0)
        out["cache_hit_ratio"] = out["cache_hits"] / lookups if lookups else 0.0
        offl = (place == 1) | (place == 2) | (place == DROP_QUEUE) | (place == DROP_OUTAGE)
        done_off = ((place == 1) | (place == 2)) & (r["done"] >= 0)
        via_bs = r["bs"] >= 0
        cloud_bh = (place == 2) & ~r["hit"] & via_bs
        nbytes = dict(self.traffic)
        nbytes["device_to_edge"] += int(r["attempts"][offl].astype(np.int64).sum()) * s.input_bytes
        nbytes["edge_to_device"] += int(np.count_nonzero(done_off)) * s.result_bytes
        nbytes["edge_to_cloud"] += int(np.count_nonzero(cloud_bh)) * s.input_bytes
        nbytes["cloud_to_edge"] += (
            int(np.count_nonzero(cloud_bh & (r["done"] >= 0))) * s.result_bytes
        )
        if s.forward_bytes or s.forward_ack_bytes:  # store-and-forward of every result
            done_any = int(np.count_nonzero((place >= 0) & (r["done"] >= 0)))
            nbytes["device_to_edge"] += done_any * s.forward_bytes
            nbytes["edge_to_device"] += done_any * s.forward_ack_bytes
        for tier in TIERS:
            out[f"bytes_{tier}"] = float(nbytes[tier])
        # D2D: input and result over the neighbours' link, off the cell and the backhaul
        out["bytes_d2d"] = float(np.count_nonzero(place == 3) * (s.input_bytes + s.result_bytes))
        out["bytes_up"] = float(nbytes["device_to_edge"] + nbytes["edge_to_cloud"])
        out["bytes_down"] = float(nbytes["edge_to_device"] + nbytes["cloud_to_edge"])
        out["energy_j"] = (int(r["energy"].sum()) + int(self.extra.get("fl_energy_uj", 0))) / 1e6
        for k, v in self.counters.items():
            out[k] = float(v)
        out["fl_rounds"] = float(len(self.rounds))
        out["fl_stragglers"] = float(sum(x["stragglers"] for x in self.rounds))
        out["fl_dropouts"] = float(sum(x["dropouts"] for x in self.rounds))
        out["cpu_s"] = round(self.cpu_s, 4)
        out["wall_s"] = round(self.wall_s, 4)
        out["events_per_cpu_s"] = self.counters["events"] / self.cpu_s if self.cpu_s > 0 else 0.0
        return out

    def _alerts(self) -> dict[str, float]:
        """Alerts of an alerting task kind (anomaly): how many, completed, dropped (a skipped
        alert cannot happen: the filter never drops one) and their latency (s)."""
        alert = self.model.task_alert
        if alert.size == 0:
            return {}
        r = self.records
        place, done = r["place"][alert], r["done"][alert]
        ok = (place >= 0) & (done >= 0)
        lat = (done[ok] - r["t_arr"][alert][ok]) / NS
        return {
            "alerts": float(alert.sum()),
            "alerts_completed": float(ok.sum()),
            "alerts_skipped": float(np.count_nonzero(place == SKIPPED)),
            "alerts_dropped": float(np.isin(place, (DROP_BATTERY, DROP_QUEUE, DROP_OUTAGE)).sum()),
            "alert_latency_p50_s": float(np.percentile(lat, 50)) if lat.size else float("nan"),
            "alert_latency_p95_s": float(np.percentile(lat, 95)) if lat.size else float("nan"),
        }

    def digest(self) -> str:
        """SHA-256 over every per-task record array (bit-identical runs share it)."""
        h = hashlib.sha256()
        for name in RECORD_FIELDS:
            a = np.ascontiguousarray(self.records[name])
            h.update(name.encode())
            h.update(a.dtype.str.encode())
            h.update(a.tobytes())
        return h.hexdigest()

    def latency_series(self, bins: int | None = None) -> dict[str, list[float]]:
        """Latency percentiles (s) of completed tasks per bin of arrival time."""
        r = self.records
        nb = bins or len(self.series["t_s"]) or 1
        ok = (r["place"] >= 0) & (r["done"] >= 0)
        t = r["t_arr"][ok]
        lat = (r["done"][ok] - t) / NS
        b = np.minimum((t * nb) // max(1, self.model.horizon_ns), nb - 1)
        out: dict[str, list[float]] = {"t_s": [], "p50_s": [], "p95_s": [], "p99_s": []}
        order = np.argsort(b, kind="stable")
        b, lat = b[order], lat[order]
        cuts = np.searchsorted(b, np.arange(nb + 1))
        for k in range(nb):
            seg = lat[cuts[k] : cuts[k + 1]]
            out["t_s"].append((k + 1) * self.model.horizon_ns / nb / NS)
            for q in (50, 95, 99):
                out[f"p{q}_s"].append(float(np.percentile(seg, q)) if seg.size else float("nan"))
        return out

    def to_json(self) -> dict[str, Any]:
        """The ``simulation`` section of results.json."""
        m = self.model

        def clean(v: float) -> float | None:
            return None if v != v else round(v, 9)

        return {
            "engine": self.engine,
            "seed": m.seed,
            "settings": m.settings.model_dump(mode="json"),
            "summary": {k: clean(v) for k, v in self.summary().items()},
            "workload": m.workload,
            "task_kind": m.task_kind,
            "alerts": m.alerts,
            "fleet": {
                name: int(c)
                for name, c in zip(
                    m.group_names,
                    np.bincount(m.dev_group, minlength=len(m.group_names)).tolist(),
                    strict=True,
                )
            },
            "initial_plan": m.initial_plan,
            "servers": {
                m.server_name(i): {
                    "speed": m.server_speed[i],
                    "workers": m.server_workers[i],
                    "task_ms": m.server_svc_ns[i] / 1e6,
                }
                for i in range(m.num_edges + 1)
            },
            "series": {
                **self.series,
                "latency": {k: [clean(x) for x in v] for k, v in self.latency_series().items()},
            },
            "rounds": self.rounds,
            "digest": self.digest(),
        }
