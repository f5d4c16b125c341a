"""The closed loop on a small fleet (in process): devices deployed with a model that never
saw digits 5-9 start seeing them; their drift monitors alarm, the node's retrain hook
fine-tunes the model by federated rounds over the devices' fresh labelled inputs, adds
version 2 (signed) and rolls it out through the canary; the fleet ends on version 2 and
its accuracy on the new data recovers."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from edgeintel.monitoring import DriftConfig
from edgeintel.onnx_files import make_session, onnx_predict
from edgeintel.runtime.agent import DeviceAgent, DeviceStream
from edgeintel.runtime.drift_watch import DriftWatch
from edgeintel.runtime.repository import ModelRepository, add_model
from edgeintel.runtime.server import InferenceServer
from edgeintel.runtime.store import DeviceStore
from edgeintel.runtime.transport import MemoryTransport
from edgeintel.security.signing import ArtifactVerifier, generate_signing_key, load_signing_key
from tests.runtime.conftest import real_digits

CFG = DriftConfig(
    window=50, stride=25, input_hz=0.5, calibration_windows=500, calibration_splits=4, seed=0
)
ONSET, PER_ROUND, ROUNDS = 125, 50, 10


@pytest.mark.slow
def test_drift_retrain_rollout_loop(tmp_path: Path) -> None:
    from edgeintel.models.export import export_onnx
    from edgeintel.models.train import TrainConfig, train_model
    from edgeintel.models.zoo import build_model
    from edgeintel.runtime.retrain import RetrainLoop
    from edgeintel.runtime.updater import ModelUpdater
    from edgeintel.training.rounds import FederatedConfig

    x, y = real_digits()
    rng = np.random.default_rng(0)
    low, allc = rng.permutation(np.flatnonzero(y < 5)), rng.permutation(len(y))
    model = build_model("mlp", (1, 8, 8), 10, width=32, seed=0)
    train_model(model, x[low[:400]], y[low[:400]], TrainConfig(epochs=15, lr=1e-2), seed=0)
    labels = [str(i) for i in range(10)]
    key = tmp_path / "signing.key"
    pub = generate_signing_key(key)
    repo = tmp_path / "repo"
    art = export_onnx(model, (1, 8, 8), tmp_path / "v1.onnx", labels)
    add_model(repo, "digits", art.path, 1, labels=labels, signer=load_signing_key(key))
    session = make_session(art.path)
    watch = DriftWatch(CFG, x[low[400:650]], lambda xs: onnx_predict(session, xs))
    devices = ["cam-0", "cam-1"]
    streams = {}
    for i, d in enumerate(devices):  # digits 0-4, then every digit (onset at ONSET)
        idx = np.r_[low[650 + ONSET * i :][:ONSET], allc[400 * i : 400 * i + 375]]
        streams[d] = DeviceStream(x[idx], y[idx], interval_s=0.0)

    def fresh(group: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """Each device's labelled inputs since the onset (its own, used on it only)."""
        out = []
        for a in agents:
            end = a.store.next_index
            out.append((a.name, a.stream.inputs[ONSET:end], a.stream.labels[ONSET:end]))
        return out

    server = InferenceServer(ModelRepository(repo, verify=ArtifactVerifier(pub)),
                             sink_path=tmp_path / "sink.db")  # fmt: skip
    transport = MemoryTransport(server.http_app())
    loop = RetrainLoop(
        model, (1, 8, 8), labels, repo, "digits", fresh,
        FederatedConfig(rounds=15, local_steps=10, batch_size=16, lr=0.1, seed=0),
        transport, signer=load_signing_key(key),
        # cam-1's bucket for this rollout is 0.73, cam-0's 0.89: a canary of cam-1 alone
        rollout={"stages": [0.8, 1.0], "min_results": 30, "looks": 1},
    )  # fmt: skip
    server.on_drift = loop
    agents = [
        DeviceAgent(
            d, streams[d], session, DeviceStore(tmp_path / f"{d}.db"), transport,
            model="digits", drift=copy.deepcopy(watch),
            updater=ModelUpdater("digits", tmp_path / d, transport, verify=ArtifactVerifier(pub)),
        )
        for d in devices
    ]  # fmt: skip
    try:
        for k in range(1, ROUNDS + 1):
            for a in agents:
                a.run(PER_ROUND * k, drain_timeout_s=10)
            for t in loop.threads:  # a retrain started by the last deliveries
                t.join(120)
        status = server.rollouts.to_json()
    finally:
        for a in agents:
            a.store.close()
        transport.close()
    events = [e["event"] for e in loop.events]
    assert events == ["retrain.started", "retrain.done", "rollout.started"], loop.events
    assert server.drift.triggered and server.drift.triggered[0]["group"] == "cam"
    r = status["rollouts"]["digits"]
    assert r["candidate"] == "2" and r["state"] == "promoted", r["timeline"]
    assert all(a.active.version == "2" for a in agents)
    new = np.concatenate([s.inputs[ONSET:] for s in streams.values()])
    truth = np.concatenate([s.labels[ONSET:] for s in streams.values()])
    acc = {
        v: float(np.mean(onnx_predict(make_session(repo / "digits" / v / "model.onnx"), new)
                         .argmax(1) == truth))
        for v in ("1", "2")
    }  # fmt: skip
    assert acc["1"] < 0.6 and acc["2"] > acc["1"] + 0.25, acc
