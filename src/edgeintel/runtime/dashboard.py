"""The node's live dashboard: rolling statistics (``LiveStats``) behind ``GET /v2/stats``
and a self-contained page at ``GET /dashboard`` that polls it twice a second.

The page shows the fleet as this node sees it (each device's requests, results
delivered, last seen), request rate, latency percentiles, cache hit ratio,
batch sizes, queue depth and results delivered; numbers update while a run
goes on. Figures are computed from the last ``window`` requests and the last
``rate_window_s`` seconds.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import numpy as np

__all__ = ["DASHBOARD_HTML", "LiveStats"]


class LiveStats:
    """Thread-safe rolling counters of one node."""

    def __init__(self, window: int = 5000, rate_window_s: float = 10.0) -> None:
        self._lock = threading.Lock()
        self._lat: deque[tuple[float, float]] = deque(maxlen=window)  # (time, ms)
        self._batches: deque[int] = deque(maxlen=window)
        self.requests = 0
        self.errors = 0
        self.cache_hits = 0
        self.cache_tiers: dict[str, int] = {}
        self.links: dict[str, dict[str, int]] = {}
        self.results_forwarded = 0
        self.results_stored = 0
        self.results_duplicate = 0
        self.devices: dict[str, dict[str, float]] = {}
        self.rate_window_s = rate_window_s
        self.started = time.time()

    def request(
        self, device: str | None, latency_ms: float, ok: bool, cache_tier: str | None
    ) -> None:
        """One answered request; ``cache_tier`` is the result cache tier that answered it
        (``exact``, ``approx``) or None."""
        now = time.time()
        with self._lock:
            self.requests += 1
            self.errors += 0 if ok else 1
            if cache_tier is not None:
                self.cache_hits += 1
                self.cache_tiers[cache_tier] = self.cache_tiers.get(cache_tier, 0) + 1
            if ok:
                self._lat.append((now, latency_ms))
            if device is not None:
                d = self.devices.setdefault(device, {"requests": 0, "results": 0, "last_seen": 0})
                d["requests"] += 1
                d["last_seen"] = now

    def link(self, name: str, up: int, down: int, failed: bool = False) -> None:
        """Bytes sent over (``up``) and received from (``down``) this node's link ``name``."""
        with self._lock:
            s = self.links.setdefault(
                name, {"bytes_up": 0, "bytes_down": 0, "requests": 0, "failures": 0}
            )
            s["bytes_up"] += up
            s["bytes_down"] += down
            s["requests"] += 1
            s["failures"] += int(failed)

    def forwarded(self, n: int) -> None:
        with self._lock:
            self.results_forwarded += n

    def batch(self, rows: int) -> None:
        with self._lock:
            self._batches.append(rows)

    def results(self, device: str, stored: int, duplicates: int) -> None:
        with self._lock:
            self.results_stored += stored
            self.results_duplicate += duplicates
            d = self.devices.setdefault(device, {"requests": 0, "results": 0, "last_seen": 0})
            d["results"] += stored
            d["last_seen"] = time.time()

    def snapshot(self, queue_depth: int = 0) -> dict[str, Any]:
        now = time.time()
        with self._lock:
            lat = np.array([ms for _, ms in self._lat]) if self._lat else np.zeros(0)
            recent = sum(1 for t, _ in self._lat if now - t <= self.rate_window_s)
            span = min(self.rate_window_s, max(now - self.started, 1e-3))
            batches = list(self._batches)
            devices = {
                k: {
                    "requests": int(v["requests"]),
                    "results": int(v["results"]),
                    "last_seen_s": round(now - v["last_seen"], 1),
                }
                for k, v in sorted(self.devices.items())
            }
            snap = {
                "uptime_s": round(now - self.started, 1),
                "requests": self.requests,
                "errors": self.errors,
                "rate_per_s": round(recent / span, 2),
                "latency_ms": {
                    f"p{q}": round(float(np.percentile(lat, q)), 3) if lat.size else None
                    for q in (50, 95, 99)
                },
                "cache_hit_ratio": round(self.cache_hits / self.requests, 4)
                if self.requests
                else 0.0,
                "cache_hits_by_tier": dict(sorted(self.cache_tiers.items())),
                "links": {k: dict(v) for k, v in self.links.items()},
                "results_forwarded_upstream": self.results_forwarded,
                "mean_batch_rows": round(float(np.mean(batches)), 2) if batches else 0.0,
                "batches": len(batches),
                "queue_depth": queue_depth,
                "results_delivered": self.results_stored,
                "results_duplicate": self.results_duplicate,
                "devices": devices,
            }
        return snap


DASHBOARD_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edgeintel node</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
.cards{display:flex;flex-wrap:wrap;gap:.8em}
.card{border:1px solid #ccc;border-radius:6px;padding:.6em 1em;min-width:9em}
.card b{display:block;font-size:1.5em}
table{border-collapse:collapse;margin-top:1em}td,th{padding:.2em .8em;border-bottom:1px solid #eee}
</style></head><body>
<h1>edgeintel node <small id="status">connecting...</small></h1>
<div class="cards">
<div class="card">requests<b id="requests">0</b></div>
<div class="card">rate /s<b id="rate">0</b></div>
<div class="card">p50 ms<b id="p50">-</b></div>
<div class="card">p95 ms<b id="p95">-</b></div>
<div class="card">p99 ms<b id="p99">-</b></div>
<div class="card">cache hit ratio<b id="cache">0</b></div>
<div class="card">exact hits<b id="exact">0</b></div>
<div class="card">approx hits<b id="approx">0</b></div>
<div class="card">upstream KiB up/down<b id="upstream">-</b></div>
<div class="card">mean batch rows<b id="batch">0</b></div>
<div class="card">queue depth<b id="queue">0</b></div>
<div class="card">results delivered<b id="delivered">0</b></div>
<div class="card">errors<b id="errors">0</b></div>
</div>
<p id="lifecycle"></p>
<table><thead><tr><th>device</th><th>requests</th><th>results delivered</th>
<th>last seen (s)</th><th>versions</th></tr></thead><tbody id="fleet"></tbody></table>
<script>
function fmt(v){return v===null||v===undefined?"-":String(v);}
async function tick(){
  try{
    const r=await fetch("/v2/stats",{cache:"no-store",credentials:"same-origin"});
    const s=await r.json();
    document.getElementById("status").textContent="up "+s.uptime_s+" s";
    const set=(id,v)=>{document.getElementById(id).textContent=fmt(v);};
    set("requests",s.requests);set("rate",s.rate_per_s);set("p50",s.latency_ms.p50);
    set("p95",s.latency_ms.p95);set("p99",s.latency_ms.p99);set("cache",s.cache_hit_ratio);
    const t=s.cache_hits_by_tier||{};set("exact",t.exact||0);set("approx",t.approx||0);
    const u=(s.links||{}).upstream;
    set("upstream",u?(u.bytes_up/1024).toFixed(1)+" / "+(u.bytes_down/1024).toFixed(1):"-");
    set("batch",s.mean_batch_rows);set("queue",s.queue_depth);
    set("delivered",s.results_delivered);set("errors",s.errors);
    const esc=(v)=>String(v).replace(/[<>&"]/g,"");
    const lc=s.lifecycle||{};const vs=lc.versions||{};
    const ro=Object.entries(lc.rollouts||{}).map(([m,r])=>esc(m)+": "+esc(r.stable)+" -> "+
      esc(r.candidate)+" "+esc(r.state)+" ("+Math.round(100*r.share)+" % of devices)"+
      (r.reason?" - "+esc(r.reason):""));
    const dr=Object.entries(lc.drift||{}).map(([g,f])=>"drift "+esc(g)+": "+f.drifting+"/"+
      f.devices+" devices now, "+f.alarms+" alarms");
    document.getElementById("lifecycle").textContent=ro.concat(dr).join(" | ");
    const rows=Object.entries(s.devices).map(([k,v])=>
      "<tr><td>"+esc(k)+"</td><td>"+v.requests+"</td><td>"+v.results+
      "</td><td>"+v.last_seen_s+"</td><td>"+
      Object.entries(vs[k]||{}).map(([m,x])=>esc(m)+" "+esc(x)).join(", ")+"</td></tr>");
    document.getElementById("fleet").innerHTML=rows.join("");
  }catch(e){document.getElementById("status").textContent="disconnected";}
}
tick();setInterval(tick,500);
</script></body></html>
"""
