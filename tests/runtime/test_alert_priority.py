"""Anomaly alerts jump the device's store-and-forward queue: stored urgent results leave
first, are acknowledged by row (not by range), survive a full store's drop-oldest, and a real
agent delivers its alarms ahead of the backlog it stored during an outage."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from edgeintel.runtime.agent import DeviceAgent, DeviceStream
from edgeintel.runtime.repository import ModelRepository
from edgeintel.runtime.server import build_app
from edgeintel.runtime.settings import OnFull, RuntimeSettings, StoreSettings
from edgeintel.runtime.store import DeviceStore
from edgeintel.runtime.transport import LinkDown, MemoryTransport, Request, Response
from edgeintel.tasks import make_task


def test_urgent_results_leave_first_and_are_acked_by_row(tmp_path: Path) -> None:
    with DeviceStore(tmp_path / "d.db", StoreSettings(group_commit_ms=0)) as s:
        for i in range(6):
            s.append(f"d:{i}", float(i), {"i": i}, index=i, priority=i in (2, 5))
        got = s.pending(3)
        assert [r.key for r in got] == ["d:2", "d:5", "d:0"]
        s.ack([r.seq for r in got], delivered=3)
        # d:1 (seq below d:2 and d:5) was not delivered: a range ack would have lost it
        assert [r.key for r in s.pending(10)] == ["d:1", "d:3", "d:4"] and s.size == 3


def test_a_full_store_drops_ordinary_results_before_alarms(tmp_path: Path) -> None:
    settings = StoreSettings(max_records=3, on_full=OnFull.DROP_OLDEST, group_commit_ms=0)
    with DeviceStore(tmp_path / "d.db", settings) as s:
        s.append("alarm", 0.0, {}, priority=True)
        for i in range(4):
            s.append(f"k{i}", 0.0, {})
        assert [r.key for r in s.pending(10)] == ["alarm", "k2", "k3"]
        assert s.counters["dropped"] == 2


def test_a_store_from_before_priorities_opens_and_forwards(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE pending (seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL "
        "UNIQUE, t_s REAL NOT NULL, created_s REAL NOT NULL, payload TEXT NOT NULL)"
    )
    db.execute("INSERT INTO pending (key, t_s, created_s, payload) VALUES ('old', 0, 0, '{}')")
    db.commit()
    db.close()
    with DeviceStore(path, StoreSettings(group_commit_ms=0)) as s:
        s.append("alarm", 1.0, {}, priority=True)
        assert [r.key for r in s.pending(10)] == ["alarm", "old"]


class _ZeroAutoencoder:
    """A session stand-in whose reconstruction is all zeros: the score is the squared input."""

    def get_inputs(self) -> list[Any]:
        return [SimpleNamespace(name="x")]

    def run(self, names: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [np.zeros((1, 1), np.float32)]


class _Outage:
    """The device's link: down (``LinkDown``) until the agent has stored ``until`` results,
    then up to the real server app; records the keys of every delivery in arrival order."""

    def __init__(self, inner: MemoryTransport, store: DeviceStore, until: int) -> None:
        self.inner, self.store, self.until = inner, store, until
        self.deliveries: list[list[str]] = []
        self.refused = 0

    def send(self, request: Request) -> Response:
        if self.store.counters["appended"] < self.until:
            self.refused += 1
            raise LinkDown("link outage")
        resp = self.inner.send(request)
        if request.path == "/v1/results" and resp.status == 200:
            self.deliveries.append([r["key"] for r in json.loads(request.body)["records"]])
        return resp

    def close(self) -> None:
        self.inner.close()


def test_a_real_agent_sends_alarms_first_when_the_link_returns(tmp_path: Path) -> None:
    n, alarms = 40, (13, 25, 37)
    x = np.full((n, 1, 1), 0.5, np.float32)
    x[list(alarms)] = 2.0  # score 4.0 > threshold 1.0: an alarm; 0.25 otherwise
    y = np.isin(np.arange(n), alarms).astype(np.int64)
    settings = RuntimeSettings(store=StoreSettings(forward_batch=8, group_commit_ms=0))
    (tmp_path / "repo").mkdir()
    app = build_app(ModelRepository(tmp_path / "repo"), sink_path=tmp_path / "sink.db")
    store = DeviceStore(tmp_path / "dev.db", settings.store)
    link = _Outage(MemoryTransport(app), store, until=n)
    try:
        agent = DeviceAgent(
            "pump-0",
            DeviceStream(x, y, 0.001),
            _ZeroAutoencoder(),
            store,
            link,
            settings=settings,
            task=make_task("anomaly", threshold=1.0),
        )
        stats = agent.run(limit=n, drain_timeout_s=20.0)
        assert stats.produced == n and link.refused > 0  # the outage was real
        first = link.deliveries[0]
        assert first[:3] == [f"pump-0:{i}" for i in alarms]  # the alarms jump the backlog
        assert first[3:] == [f"pump-0:{i}" for i in range(5)]  # then the backlog, in order
        sent = [k for batch in link.deliveries for k in batch]
        assert sorted(sent) == sorted(f"pump-0:{i}" for i in range(n))  # each exactly once
        assert app.state.server.sink.counts() == {"pump-0": n}
        assert store.size == 0 and store.counters["delivered"] == n
    finally:
        store.close()
        link.close()


class _Backhaul:
    """The edge's upstream link: down until ``up`` is set, then the cloud app; records the
    keys of every forwarded batch in arrival order."""

    def __init__(self, inner: MemoryTransport) -> None:
        self.inner, self.up = inner, False
        self.batches: list[list[tuple[str, bool]]] = []

    def send(self, request: Request) -> Response:
        if not self.up:
            raise LinkDown("backhaul outage")
        resp = self.inner.send(request)
        if request.path == "/v1/results" and resp.status == 200:
            recs = json.loads(request.body)["records"]
            self.batches.append([(r["key"], r.get("urgent", False)) for r in recs])
        return resp

    def close(self) -> None:
        self.inner.close()


def test_the_edge_forwards_alarms_to_the_cloud_ahead_of_its_backlog(tmp_path: Path) -> None:
    """Two hops: alarms stored at the edge during a backhaul outage reach the cloud first
    (before older ordinary results of every device), marked urgent there too, each once."""
    (tmp_path / "repo").mkdir()
    repo = ModelRepository(tmp_path / "repo")
    cloud = build_app(repo, sink_path=tmp_path / "cloud.db", node="cloud")
    backhaul = _Backhaul(MemoryTransport(cloud))
    edge_app = build_app(
        repo, sink_path=tmp_path / "edge.db", node="edge", upstream=backhaul, upstream_name="cloud"
    )
    edge = MemoryTransport(edge_app)

    def post(device: str, records: list[dict[str, Any]]) -> None:
        body = json.dumps({"device": device, "records": records}).encode()
        resp = edge.send(Request("POST", "/v1/results", body, {"Content-Type": "application/json"}))
        assert resp.status == 200, resp.body

    try:
        post("a", [{"key": f"a:{i}", "seq": i, "t_s": i, "payload": {}} for i in range(6)])
        post("b", [{"key": f"b:{i}", "seq": i, "t_s": i, "payload": {}} for i in range(3)])
        post("b", [{"key": "b:3", "seq": 3, "t_s": 3.0, "payload": {}, "urgent": True}])
        post("a", [{"key": "a:6", "seq": 6, "t_s": 6.0, "payload": {}, "urgent": True}])
        backhaul.up = True
        sink = cloud.state.server.sink
        deadline = time.monotonic() + 30  # the forwarder backs off up to 1 s per retry
        # the backhaul records a batch after the cloud has stored it: wait for both
        while time.monotonic() < deadline and (
            sum(sink.counts().values()) < 11 or sum(map(len, backhaul.batches)) < 11
        ):
            time.sleep(0.01)
        sent = [k for batch in backhaul.batches for k in batch]
        assert sent[:2] == [("b:3", True), ("a:6", True)]  # alarms first, in arrival order
        assert sorted(k for k, _ in sent) == sorted([*(f"a:{i}" for i in range(7)),
                                                     *(f"b:{i}" for i in range(4))])  # fmt: skip
        assert sink.counts() == {"a": 7, "b": 4}
        (n,) = sink._db.execute("SELECT COUNT(*) FROM results WHERE urgent = 1").fetchone()
        assert n == 2  # the cloud knows which results were alarms
    finally:
        edge.close()
        backhaul.close()


def test_a_non_boolean_urgent_flag_is_a_400(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    app = build_app(ModelRepository(tmp_path / "repo"), sink_path=tmp_path / "sink.db")
    t = MemoryTransport(app)
    try:
        rec = {"key": "d:0", "seq": 0, "t_s": 0.0, "urgent": "yes"}
        body = json.dumps({"device": "d", "records": [rec]}).encode()
        resp = t.send(Request("POST", "/v1/results", body, {"Content-Type": "application/json"}))
        assert resp.status == 400 and b"records[0].urgent must be true or false" in resp.body
    finally:
        t.close()
