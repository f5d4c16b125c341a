"""Drift on device agents, reported to the node: real digits, a real shift (the stream
turns from digits 0-4 to digits 5-9, unseen at deployment); the alarm travels with the
device's deliveries, the node counts it per group and calls the retrain hook once."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeintel.monitoring import DriftConfig
from edgeintel.onnx_files import make_session, onnx_predict
from edgeintel.runtime.agent import DeviceAgent, DeviceStream
from edgeintel.runtime.drift_watch import DriftBook, DriftWatch, device_group, output_probs
from edgeintel.runtime.repository import ModelRepository, add_model
from edgeintel.runtime.server import InferenceServer
from edgeintel.runtime.store import DeviceStore
from edgeintel.runtime.transport import MemoryTransport
from tests.runtime.conftest import linear_onnx, real_digits

# one input per 2 s, one false alarm per device-hour allowed: 0.46 % per test and detector
CFG = DriftConfig(
    window=50, stride=25, input_hz=0.5, calibration_windows=500, calibration_splits=4, seed=0
)


def test_drift_book_groups_and_triggers_once() -> None:
    book = DriftBook(trigger_share=0.5)
    assert device_group("phone-12") == "phone" and device_group("solo") == "solo"
    assert book.ingest("phone-0", {"drift": False, "alarms": 0}, 1.0) is None
    assert book.ingest("phone-1", {"drift": True, "alarms": 1}, 2.0) == "phone"  # 1 of 2
    assert book.ingest("phone-1", {"drift": True, "alarms": 1}, 3.0) is None  # once
    assert book.groups()["phone"] == {
        "devices": 2,
        "drifting": 1,
        "alarms": 1,
        "alarmed": ["phone-1"],
    }
    book.ingest("phone-1", {"drift": False, "alarms": 1}, 4.0)  # cleared: may trigger again
    assert book.ingest("phone-0", {"drift": True, "alarms": 1}, 5.0) == "phone"
    assert [t["t_s"] for t in book.triggered] == [2.0, 5.0]
    assert np.allclose(output_probs(np.array([0.0, np.log(3.0)])), [0.25, 0.75])


def test_agent_reports_drift_and_the_node_triggers_a_retrain(tmp_path: Path) -> None:
    x, y = real_digits()
    rng = np.random.default_rng(0)  # the file is ordered by writer: mix them
    low, high = rng.permutation(np.flatnonzero(y < 5)), rng.permutation(np.flatnonzero(y >= 5))
    f = linear_onnx(tmp_path / "m.onnx", x[low[:400]], y[low[:400]])
    add_model(tmp_path / "repo", "digits", f, 1)
    session = make_session(f)
    watch = DriftWatch(CFG, x[low[400:700]], lambda xs: onnx_predict(session, xs))
    stream_idx = np.r_[low[700:850], high[:150]]  # onset at input 150
    stream = DeviceStream(x[stream_idx], y[stream_idx], interval_s=0.0)
    due: list[str] = []
    server = InferenceServer(
        ModelRepository(tmp_path / "repo"), sink_path=tmp_path / "sink.db",
        on_drift=lambda group, figures: due.append(group),
    )  # fmt: skip
    transport = MemoryTransport(server.http_app())
    try:
        with DeviceStore(tmp_path / "cam-0.db") as store:
            agent = DeviceAgent(
                "cam-0", stream, session, store, transport, model="digits", drift=watch
            )
            agent.run(300)
        assert server.sink is not None and len(server.sink.keys("cam-0")) == 300
    finally:
        transport.close()
    assert watch.first_alarm is not None and 150 < watch.first_alarm <= 150 + 100
    assert watch.alarms >= 1 and watch.drift
    assert due == ["cam"]  # the node's hook, once
    groups = server.drift.to_json()["groups"]
    assert groups["cam"]["drifting"] == 1 and groups["cam"]["alarmed"] == ["cam-0"]
