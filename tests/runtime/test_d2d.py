"""Device-to-device (D2D) execution in the runtime: a watch with no internet link has a
neighbouring phone run its model (the phone serves it like a node); the answers equal local
execution output for output, and a helper that fails falls back to local inference."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeintel.errors import TransportError
from edgeintel.onnx_files import make_session
from edgeintel.runtime.agent import DeviceAgent, DeviceStream
from edgeintel.runtime.repository import ModelRepository, add_model
from edgeintel.runtime.seams import ExecutionTier, StaticPlan
from edgeintel.runtime.server import InferenceServer
from edgeintel.runtime.store import DeviceStore
from edgeintel.runtime.transport import MemoryTransport, Request, Response
from edgeintel.runtime.wiring import AdaptivePlan
from tests.runtime.conftest import linear_onnx, real_digits


def test_d2d_equals_local_and_works_without_internet(tmp_path: Path) -> None:
    x, y = real_digits()
    f = linear_onnx(tmp_path / "m.onnx", x[:900], y[:900])
    add_model(tmp_path / "repo", "digits", f, 1)
    phone = MemoryTransport(InferenceServer(ModelRepository(tmp_path / "repo")).http_app())
    session = make_session(f)
    plan = StaticPlan(ExecutionTier.D2D, target="phone-0")
    try:
        with DeviceStore(tmp_path / "watch.db") as store:
            # no transport: the internet link is down; the phone is reached directly
            watch = DeviceAgent(
                "watch-0", DeviceStream(x[900:960], y[900:960], 0.0), session, store,
                None, model="digits", plan=plan, peers={"phone-0": phone},
            )  # fmt: skip
            for xi in x[900:930]:
                out, placement, _ = watch.infer(xi)
                local = session.run(None, {"input": xi[None]})[0][0]
                assert placement == "d2d" and np.array_equal(out, local)
            stats = watch.run(60)
            assert stats.placements == {"d2d": 60} and store.size == 60  # kept for later
    finally:
        phone.close()


def test_failing_helper_falls_back_to_local(tmp_path: Path) -> None:
    x, y = real_digits()
    f = linear_onnx(tmp_path / "m.onnx", x[:900], y[:900])

    def down(request: Request) -> Response:
        raise TransportError("phone out of range")

    with DeviceStore(tmp_path / "watch.db") as store:
        watch = DeviceAgent(
            "watch-0", DeviceStream(x[900:920], y[900:920], 0.0), make_session(f), store,
            None, model="digits", plan=StaticPlan(ExecutionTier.D2D, target="phone-0"),
            peers={"phone-0": MemoryTransport(handler=down)},
        )  # fmt: skip
        stats = watch.run(20)
    assert stats.produced == 20 and stats.placements == {"device_fallback": 20}


def test_planner_d2d_option_becomes_a_d2d_decision() -> None:
    class Opt:
        tier, label, target, mask = "d2d", "d2d:phone-0", "phone-0", None

    plan = AdaptivePlan.__new__(AdaptivePlan)  # only the option -> decision mapping
    plan.cloud = "cloud"
    d = plan.decision(Opt())  # type: ignore[arg-type]
    assert (d.tier, d.target, d.label) == (ExecutionTier.D2D, "phone-0", "d2d:phone-0")
