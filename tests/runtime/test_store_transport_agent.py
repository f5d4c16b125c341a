"""Store-and-forward (SQLite), the transport seam with link emulation, and the device agent
against the real server app in memory."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from edgeintel.runtime.agent import DeviceAgent, DeviceStream
from edgeintel.runtime.repository import ModelRepository, add_model
from edgeintel.runtime.seams import ExecutionTier, StaticPlan
from edgeintel.runtime.server import build_app
from edgeintel.runtime.settings import OnFull, RuntimeSettings, StoreSettings
from edgeintel.runtime.store import DeviceStore, StoreFull
from edgeintel.runtime.transport import (
    LinkDown,
    LinkEmulator,
    MemoryTransport,
    Request,
    Response,
    TransportError,
)
from edgeintel.scenario import LinkSpec, TracePoint
from tests.runtime.conftest import digits_onnx, sample_digits


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += max(s, 0.0)


def test_store_appends_in_order_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    with DeviceStore(path, StoreSettings(group_commit_ms=0)) as s:
        for i in range(5):
            s.append(f"d:{i}", i * 0.1, {"label": i}, index=i)
        got = s.pending(3)
        assert [r.key for r in got] == ["d:0", "d:1", "d:2"]
        s.ack([r.seq for r in got], delivered=3)
    with DeviceStore(path) as s:
        assert [r.key for r in s.pending(10)] == ["d:3", "d:4"]
        assert s.next_index == 5
        assert s.counters["delivered"] == 3 and s.size == 2
        assert s.pending(1)[0].payload == {"label": 3}


def test_store_on_full_policies(tmp_path: Path) -> None:
    with DeviceStore(
        tmp_path / "a.db",
        StoreSettings(max_records=3, on_full=OnFull.REJECT_NEW, group_commit_ms=0),
    ) as s:
        for i in range(3):
            s.append(f"k{i}", 0, {})
        with pytest.raises(StoreFull):
            s.append("k3", 0, {})
        assert s.counters["rejected"] == 1 and s.size == 3
    with DeviceStore(
        tmp_path / "b.db",
        StoreSettings(max_records=3, on_full=OnFull.DROP_OLDEST, group_commit_ms=0),
    ) as s:
        for i in range(5):
            s.append(f"k{i}", 0, {})
        assert [r.key for r in s.pending(10)] == ["k2", "k3", "k4"]
        assert s.counters["dropped"] == 2


def test_store_ttl_expires_old_results(tmp_path: Path) -> None:
    clock = FakeClock()
    with DeviceStore(tmp_path / "t.db", StoreSettings(ttl_s=10, group_commit_ms=0), clock) as s:
        s.append("old", 0, {})
        clock.t = 8
        s.append("new", 0, {})
        clock.t = 12
        assert s.expire() == 1
        assert [r.key for r in s.pending(10)] == ["new"] and s.counters["expired"] == 1


def test_group_commit_shares_commits(tmp_path: Path) -> None:
    with DeviceStore(tmp_path / "g.db", StoreSettings(group_commit_ms=5)) as s:

        def worker(w: int) -> None:
            for i in range(50):
                s.append(f"{w}:{i}", 0, {})

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert s.size == 400
        assert s.commits < 200  # 400 appends, far fewer fsyncs


def test_link_emulation_delay_outage_and_loss() -> None:
    clock = FakeClock()
    echo = MemoryTransport(handler=lambda r: Response(200, b"x" * 1000))
    link = LinkSpec(
        bandwidth_mbps=8.0,
        rtt_ms=20.0,
        trace=[
            TracePoint(t_s=0, bandwidth_mbps=8.0),
            TracePoint(t_s=10, bandwidth_mbps=0),
            TracePoint(t_s=20, bandwidth_mbps=8.0, loss=0.5),
        ],
    )
    em = LinkEmulator(echo, link, seed=0, clock=clock, sleep=clock.sleep)
    em.send(Request("POST", "/", b"y" * 2000))
    # 20 ms RTT + 8 * 3000 bytes / 8 Mbit/s = 20 ms + 3 ms
    assert clock.t == pytest.approx(0.023)
    assert em.stats.bytes_up == 2000 and em.stats.bytes_down == 1000
    clock.t = 15
    with pytest.raises(LinkDown):
        em.send(Request("GET", "/"))
    clock.t = 25
    ok = lost = 0
    for _ in range(400):
        try:
            em.send(Request("GET", "/"))
            ok += 1
        except TransportError:
            lost += 1
    assert 150 < lost < 250 and ok + lost == 400  # loss 0.5


@pytest.fixture(scope="module")
def digits_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repo_agent")
    add_model(root, "digits", digits_onnx(tmp_path_factory.mktemp("m") / "d.onnx"), 1)
    return root


def _stream(n: int = 40) -> DeviceStream:
    return DeviceStream(sample_digits(n, seed=3), np.arange(n) % 10, interval_s=0.0)


def test_agent_offloads_and_forwards_exactly_once(digits_repo: Path, tmp_path: Path) -> None:
    repo = ModelRepository(digits_repo)
    app = build_app(repo, sink_path=tmp_path / "sink.db")
    transport = MemoryTransport(app)
    try:
        store = DeviceStore(tmp_path / "dev.db")
        agent = DeviceAgent(
            "phone-0",
            _stream(),
            repo.get("digits").session,
            store,
            transport,
            model="digits",
            plan=StaticPlan(tier=ExecutionTier.EDGE),
        )
        stats = agent.run(limit=40)
        assert stats.produced == 40 and stats.placements == {"edge": 40}
        assert store.size == 0 and store.counters["delivered"] == 40
        sink = app.state.server.sink
        assert sink.keys("phone-0") == [f"phone-0:{i}" for i in range(40)]
        store.close()
    finally:
        transport.close()


def test_agent_falls_back_then_delivers_backlog(digits_repo: Path, tmp_path: Path) -> None:
    repo = ModelRepository(digits_repo)
    session = repo.get("digits").session

    def down(_: Request) -> Response:
        raise TransportError("unreachable")

    store = DeviceStore(tmp_path / "dev.db")
    agent = DeviceAgent(
        "kiosk-1",
        _stream(),
        session,
        store,
        MemoryTransport(handler=down),
        model="digits",
        plan=StaticPlan(tier=ExecutionTier.EDGE),
        settings=RuntimeSettings(),
    )
    stats = agent.run(limit=30, drain_timeout_s=0.2)
    assert stats.placements == {"device_fallback": 30}
    assert store.size == 30  # nothing lost while the server is unreachable
    store.close()
    # link back: a restarted agent resumes at index 30 and drains the backlog in order
    app = build_app(repo, sink_path=tmp_path / "sink.db")
    transport = MemoryTransport(app)
    try:
        store = DeviceStore(tmp_path / "dev.db")
        agent = DeviceAgent(
            "kiosk-1",
            _stream(),
            session,
            store,
            transport,
            model="digits",
            plan=StaticPlan(tier=ExecutionTier.EDGE),
        )
        stats = agent.run(limit=40)
        assert stats.produced == 10 and stats.placements == {"edge": 10}
        keys = app.state.server.sink.keys("kiosk-1")
        assert keys == [f"kiosk-1:{i}" for i in range(40)]
        store.close()
    finally:
        transport.close()


class EveryOther:
    """A redundancy filter standing in for edgeintel.caching's (seam test)."""

    def __init__(self) -> None:
        self.calls = 0

    def should_process(self, x: np.ndarray) -> bool:
        self.calls += 1
        return self.calls % 2 == 1


def test_redundancy_filter_seam_skips_inputs(digits_repo: Path, tmp_path: Path) -> None:
    repo = ModelRepository(digits_repo)
    with DeviceStore(tmp_path / "f.db") as store:
        agent = DeviceAgent(
            "cam-0", _stream(), repo.get("digits").session, store, None, filter=EveryOther()
        )
        stats = agent.run(limit=20)
        assert stats.produced == 20 and stats.skipped == 10
        assert stats.bytes_not_uploaded == 10 * 64 * 4  # ten skipped float32 (1, 8, 8)
        assert stats.placements == {"device": 10, "reused": 10}
        recs = store.pending(20)
        assert [r.key for r in recs[:3]] == ["cam-0:0", "cam-0:1", "cam-0:2"]
        # a skipped input reuses the last computed result
        for a, b in zip(recs[0::2], recs[1::2], strict=True):
            assert b.payload["placement"] == "reused"
            assert b.payload["label"] == a.payload["label"]


def test_split_plan_posts_head_output_to_tail(tmp_path: Path) -> None:
    """Head = the digits CNN (device), tail = softmax over its logits (server)."""
    import onnx
    from onnx import TensorProto, helper

    from edgeintel.onnx_files import make_session

    head = digits_onnx(tmp_path / "head.onnx")
    graph = helper.make_graph(
        [helper.make_node("Softmax", ["logits"], ["probs"], axis=1)],
        "tail",
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 10])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "tail.onnx")
    root = tmp_path / "repo"
    add_model(root, "digits_tail_7", tmp_path / "tail.onnx")
    app = build_app(ModelRepository(root))
    transport = MemoryTransport(app)
    try:
        with DeviceStore(tmp_path / "s.db") as store:
            session = make_session(head)
            agent = DeviceAgent(
                "phone-3",
                _stream(),
                session,
                store,
                transport,
                plan=StaticPlan(tier=ExecutionTier.EDGE, tail_model="digits_tail_7"),
                head_session=session,
            )
            x = _stream().inputs[0]
            probs, placement, _ = agent.infer(x)
            assert placement == "split-edge"
            logits = session.run(None, {"input": x[None]})[0][0]
            want = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
            np.testing.assert_allclose(probs, want, rtol=1e-5)
    finally:
        transport.close()


def test_a_server_without_a_sink_gets_a_hint(digits_repo: Path, tmp_path: Path) -> None:
    """An agent talking to `serve` started without --sink keeps its results and says why and
    what to do (issue 24 item 9), from the real server's answer."""
    repo = ModelRepository(digits_repo)
    transport = MemoryTransport(build_app(repo))  # no sink_path: results are refused
    try:
        with DeviceStore(tmp_path / "dev.db") as store:
            agent = DeviceAgent("cam-0", _stream(6), repo.get("digits").session, store,
                                transport, model="digits")  # fmt: skip
            agent.run(limit=6, drain_timeout_s=0.3)
            assert store.size == 6  # kept, not lost
            hint = agent.delivery_hint(store.size)
    finally:
        transport.close()
    assert hint is not None and "6 result(s) not delivered" in hint
    assert "404" in hint and "edgeintel serve REPO --sink FILE" in hint
