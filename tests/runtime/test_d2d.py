"""Device-to-device (D2D) execution in the runtime: a watch with no internet link has a
neighbouring phone run its model (the phone's agent answers through its PeerService, on a
real socket, over mutual TLS); the answers equal local execution output for output, the
helper counts what it served, and a helper that fails falls back to local inference."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeintel.errors import TransportError
from edgeintel.onnx_files import make_session
from edgeintel.runtime.agent import DeviceAgent, DeviceStream
from edgeintel.runtime.auth import Authenticator, Tokens
from edgeintel.runtime.peer import PeerService
from edgeintel.runtime.repository import ModelRepository, add_model
from edgeintel.runtime.seams import ExecutionTier, StaticPlan
from edgeintel.runtime.server import InferenceServer
from edgeintel.runtime.store import DeviceStore
from edgeintel.runtime.transport import HttpTransport, MemoryTransport, Request, Response
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


def _pair(tmp_path: Path, x: np.ndarray, y: np.ndarray) -> tuple[DeviceAgent, DeviceAgent]:
    f = linear_onnx(tmp_path / "m.onnx", x[:900], y[:900])
    stores = [DeviceStore(tmp_path / f"{n}.db") for n in ("phone", "watch")]
    phone = DeviceAgent("phone-0", DeviceStream(x[:10], y[:10], 0.0), make_session(f), stores[0],
                        None, model="digits", version="4")  # fmt: skip
    watch = DeviceAgent(
        "watch-0", DeviceStream(x[900:960], y[900:960], 0.0), make_session(f), stores[1], None,
        model="digits", plan=StaticPlan(ExecutionTier.D2D, target="phone-0"), token="w" * 24,
    )  # fmt: skip
    return phone, watch


def test_neighbour_agent_executes_d2d_over_mutual_tls(tmp_path: Path) -> None:
    """The phone's own agent answers the watch's inputs over a real TLS socket; outputs
    equal local execution, each result carries the phone's version, and the phone counts
    exactly the requests it served; wrong tokens, certificates and models are refused."""
    from edgeintel.security.pki import issue_deployment

    x, y = real_digits()
    phone, watch = _pair(tmp_path, x, y)
    pki = issue_deployment(tmp_path / "pki", {}, ["phone-0", "watch-0", "intruder"])
    tokens = Tokens(devices={"watch-0": "w" * 24, "intruder": "i" * 24}, nodes={}, operators={})
    auth = Authenticator(tokens)
    with PeerService(phone, tls=pki.devices["phone-0"], authorize=auth.device) as svc:
        link = HttpTransport(svc.address, tls=pki.devices["watch-0"])
        watch.peers["phone-0"] = link
        try:
            for xi in x[900:920]:
                out, placement, _ = watch.infer(xi)
                local = watch.session.run(None, {"input": xi[None]})[0][0]
                assert placement == "d2d" and np.array_equal(out, local)
                assert watch.last_version == "4"  # computed by the helper's version
            assert svc.served == {"watch-0": 20} and phone.stats.served_d2d == 20
            # the intruder's certificate with the watch's token: refused, nothing served
            bad = HttpTransport(svc.address, tls=pki.devices["intruder"])
            watch.peers["phone-0"] = bad
            _, placement, _ = watch.infer(x[950])
            assert placement == "device_fallback" and svc.refused == 1
            bad.close()
            resp = link.send(Request("POST", "/v2/models/other/infer", b"{}", {}))
            assert resp.status == 404 and svc.served == {"watch-0": 20}
        finally:
            link.close()
    assert phone.stats.produced == 0  # the helper stored nothing: the result is the watch's
    phone.store.close()
    watch.store.close()


def test_d2d_results_are_stored_and_delivered_by_the_requester_once(tmp_path: Path) -> None:
    """Plaintext helper; the watch's stream runs wholly over D2D, every result lands in the
    watch's store once, and the helper served exactly as many requests."""
    x, y = real_digits()
    phone, watch = _pair(tmp_path, x, y)
    with PeerService(phone) as svc:
        watch.peers["phone-0"] = HttpTransport(svc.address)
        stats = watch.run(60)
        watch.peers["phone-0"].close()
    assert stats.placements == {"d2d": 60} and watch.store.size == 60
    assert sum(svc.served.values()) == 60 and phone.store.size == 0
    keys = [r.key for r in watch.store.pending(100)]
    assert len(set(keys)) == 60 and all(k.startswith("watch-0:") for k in keys)
    phone.store.close()
    watch.store.close()
