"""The real components behind the runtime's seams: the caching component's result cache on
the server (hits by tier), its redundancy filter on the device, the offloading planner's
adaptive plan (hysteresis, outages, splits executed through the server), the edge server
relaying to the cloud over an emulated backhaul, and results forwarded one hop up."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from edgeintel.caching.settings import FilterSettings, ResultCacheSettings
from edgeintel.errors import ConfigError, DataError
from edgeintel.onnx_files import make_session
from edgeintel.runtime.agent import DeviceAgent, DeviceStream
from edgeintel.runtime.auth import Tokens
from edgeintel.runtime.protocol import decode_response, encode_request
from edgeintel.runtime.repository import ModelRepository, add_model
from edgeintel.runtime.seams import ExecutionTier, StaticPlan
from edgeintel.runtime.server import build_app
from edgeintel.runtime.store import DeviceStore
from edgeintel.runtime.transport import LinkEmulator, MemoryTransport, PathLink
from edgeintel.runtime.wiring import (
    FilterThreshold,
    ServerResultCache,
    device_filter,
    filter_for_device,
    input_features,
    server_cache,
    threshold_from_results,
    tune_device_filter,
)
from edgeintel.scenario import LinkSpec, TracePoint
from edgeintel.tasks import make_task
from tests.runtime.conftest import digits_onnx, sample_digits


@pytest.fixture(scope="module")
def digits_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wiring_repo")
    onnx_path = digits_onnx(tmp_path_factory.mktemp("m") / "d.onnx")
    add_model(root, "digits", onnx_path, 1)
    add_model(root, "other", onnx_path, 1)
    return root


async def _with_app(app: object, fn: object) -> object:
    async with app.router.lifespan_context(app):  # type: ignore[attr-defined]
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await fn(c)  # type: ignore[operator]


def _post(c: httpx.AsyncClient, model: str, x: np.ndarray) -> object:
    body, hl = encode_request({"input": x})
    return c.post(
        f"/v2/models/{model}/infer",
        content=body,
        headers={"Inference-Header-Content-Length": str(hl)},
    )


# ---------------------------------------------------------------------- result cache


def test_input_features_is_the_caching_stage_vector() -> None:
    from edgeintel.caching.reuse import downsample_vector

    x = sample_digits(1)
    np.testing.assert_array_equal(input_features({"input": x}), downsample_vector(x[0]))
    assert input_features({"input": sample_digits(2)}) is None  # a batch: exact tier only
    assert input_features({"a": x, "b": x}) is None
    assert input_features({"input": x.astype(np.int32)}) is None


def test_server_result_cache_tiers_and_per_model(digits_repo: Path) -> None:
    """Repeats hit the exact tier, noisy views of a cached input the approximate tier
    (votes must agree); another model never reuses these results."""
    settings = ResultCacheSettings(k=3, min_votes=2, homogeneity=1.0, max_distance=0.05)
    made: list[str] = []

    def factory(model: str, version: str) -> ServerResultCache:
        made.append(model)
        return ServerResultCache(settings)

    app = build_app(ModelRepository(digits_repo), cache=factory, features=input_features)
    rng = np.random.default_rng(0)
    base = sample_digits(1, seed=5)

    async def fn(c: httpx.AsyncClient) -> None:
        views = [base + rng.normal(0, 0.01, base.shape).astype(np.float32) for _ in range(4)]
        outs = []
        for x in [base, base, *views]:
            r = await _post(c, "digits", x)
            assert r.status_code == 200
            hl = int(r.headers["inference-header-content-length"])
            outs.append(decode_response(r.content, hl))
        assert (await _post(c, "other", base)).status_code == 200
        stats = (await c.get("/v2/stats")).json()
        # base: miss; base again: exact; the first view finds 1 neighbour (< 2 votes): a
        # miss, inserted; from then on the views find >= 2 agreeing neighbours
        tiers = stats["cache_hits_by_tier"]
        assert tiers["exact"] == 1
        assert tiers.get("approx", 0) >= 2
        for o in outs:  # every reused result carries the same class as the computed one
            assert int(np.argmax(o["logits"])) == int(np.argmax(outs[0]["logits"]))
        metrics = (await c.get("/metrics")).text
        assert 'edgeintel_cache_hits_total{model="digits",tier="exact"} 1.0' in metrics
        assert 'edgeintel_cache_hits_total{model="other"' not in metrics

    asyncio.run(_with_app(app, fn))  # type: ignore[arg-type]
    assert sorted(made) == ["digits", "other"]  # one cache per model


def test_approx_tier_refuses_far_inputs() -> None:
    cache = server_cache(ResultCacheSettings(k=2, min_votes=1, max_distance=0.01), "micro-1")
    assert isinstance(cache, ServerResultCache)  # backend: memory
    a, b = sample_digits(2, seed=9)
    fa, fb = input_features({"i": a[None]}), input_features({"i": b[None]})
    out = {"logits": np.eye(10, dtype=np.float32)[3][None]}
    cache.put("ka", out, fa)
    assert cache.get("ka", fa) is not None and cache.stats.exact_hits == 1
    hit = cache.get("other-key", fa)
    assert hit is not None and cache.stats.approx_hits == 1
    np.testing.assert_array_equal(hit["logits"], out["logits"])
    assert cache.get("kb", fb) is None  # far away: no reuse
    assert cache.stats.misses == 1


class _Const:
    """A stand-in session answering class 1 for every input."""

    class _In:
        name = "input"

    def get_inputs(self) -> list[object]:
        return [self._In()]

    def run(self, names: object, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        n = len(next(iter(feeds.values())))
        return [np.tile(np.eye(3, dtype=np.float32)[1], (n, 1))]


def test_device_filter_is_the_caching_adaptive_filter(tmp_path: Path) -> None:
    """The scenario's probing settings reach caching's AdaptiveFilter; the agent skips
    what it skips, reuses the last result, and tells it the labels it computes."""
    from edgeintel.caching.filter import AdaptiveFilter

    f = device_filter("pixel", 0.2, FilterSettings(probe_every=2, raise_after=2))
    assert isinstance(f, AdaptiveFilter) and f.probe_every == 2 and f.raise_after == 2
    x = np.zeros((1, 16, 16), dtype=np.float32)
    y = x.copy()
    y[0, :8] = 1.0  # half the pixels change: difference 0.5 > 0.2
    frames = np.stack([x, y, y, y, y, y])
    with DeviceStore(tmp_path / "s.db") as store:
        agent = DeviceAgent(
            "cam-0", DeviceStream(frames, np.zeros(6, int), 0.0), _Const(), store, None, filter=f
        )
        stats = agent.run(limit=6)
        recs = store.pending(6)
    # x, y processed; y, y skipped; the probe after 2 skips processed; y skipped
    assert [r.payload["placement"] for r in recs] == [
        "device",
        "device",
        "reused",
        "reused",
        "device",
        "reused",
    ]
    assert stats.skipped == 3 and stats.bytes_not_uploaded == 3 * 16 * 16 * 4
    assert f.current == 1  # observed the computed labels


def test_tuned_device_filter_meets_target_on_its_segment() -> None:
    from edgeintel.caching.filter import prepare, simulate_threshold

    rng = np.random.default_rng(1)
    scenes = rng.random((4, 1, 16, 16)).astype(np.float32)
    stream = np.repeat(scenes, 10, axis=0) + rng.normal(0, 0.005, (40, 1, 16, 16)).astype(
        np.float32
    )
    labels = np.repeat(np.arange(4), 10)

    def predict(b: np.ndarray) -> np.ndarray:
        idx = [int(np.argmin(((scenes - v) ** 2).sum(axis=(1, 2, 3)))) for v in b]
        return np.eye(4)[idx]

    fs = FilterSettings(target=0.95, profile_fraction=0.5, features=["pixel", "hist"])
    filt, report = tune_device_filter(stream, predict, fs)
    skip, agree = simulate_threshold(
        [prepare(x) for x in stream[:20]], labels[:20].tolist(), report.feature, report.threshold
    )
    assert agree >= 0.95 and skip > 0.5  # near-duplicates within a scene are skipped
    assert filt.threshold == report.threshold


class _Session:
    """An ONNX-session stand-in: scores = one-hot of the frame's mean brightness bucket."""

    class _Input:
        name = "x"

    def get_inputs(self) -> list[_Session._Input]:
        return [self._Input()]

    def run(self, _: object, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        b = feeds["x"]
        return [np.eye(4)[np.clip((b.mean(axis=(1, 2, 3)) * 4).astype(int), 0, 3)]]


def test_filter_for_device_takes_the_caching_stage_threshold_else_tunes(tmp_path: Path) -> None:
    """One way to get a device's filter (runtime stage and `edgeintel device`): the caching
    stage's threshold when there is one (as results.json records it), else tuned here."""
    rng = np.random.default_rng(0)
    stream = np.repeat(rng.random((4, 1, 8, 8)).astype(np.float32), 6, axis=0)
    fs = FilterSettings(features=["pixel"])
    filt, info = filter_for_device(fs, stream, _Session(), FilterThreshold("pixel", 0.125))
    assert filt.tuned == filt.threshold == 0.125
    assert info == {"feature": "pixel", "threshold_tuned": 0.125, "threshold_from": "caching stage"}
    filt, info = filter_for_device(fs, stream, _Session(), None)
    assert info["threshold_from"] == "tuned on the device's first segment"
    assert filt.threshold == info["threshold_tuned"]

    results = tmp_path / "results.json"
    th = {"feature": "hist", "threshold": 0.25, "target": 0.99}
    results.write_text(
        json.dumps(
            {"run_id": "r", "caching": {"filter": {"per_device": {"cam-0": {"threshold": th}}}}}
        )
    )
    assert threshold_from_results(results, "cam-0") == FilterThreshold("hist", 0.25)
    # an anomaly run's threshold carries the sensitivity that guards reuse
    th["sensitivity"] = 0.5
    results.write_text(
        json.dumps(
            {"run_id": "r", "caching": {"filter": {"per_device": {"cam-0": {"threshold": th}}}}}
        )
    )
    tuned = threshold_from_results(results, "cam-0")
    assert tuned == FilterThreshold("hist", 0.25, 0.5)
    anomaly = make_task("anomaly", threshold=1.0)
    filt, _ = filter_for_device(fs, stream, _Session(), tuned, anomaly)
    assert filt.sensitivity == 0.5 and filt.margin is not None and filt.margin(0.75) == 0.25
    th["sensitivity"] = -1
    results.write_text(
        json.dumps(
            {"run_id": "r", "caching": {"filter": {"per_device": {"cam-0": {"threshold": th}}}}}
        )
    )
    with pytest.raises(DataError, match="sensitivity: expected a finite number"):
        threshold_from_results(results, "cam-0")
    with pytest.raises(ConfigError, match="no caching filter threshold for 'cam-1'"):
        threshold_from_results(results, "cam-1")


def test_filter_stands_aside_where_it_costs_more_than_it_saves(tmp_path: Path) -> None:
    """No filter on a device where the caching stage found it would cost more than it
    saves (results.json's ``stands_aside``), nor where, tuned here, its timed cost beats
    the model time it saves on the profiling segment; a filter where the model is dear."""
    rng = np.random.default_rng(0)
    stream = np.repeat(rng.random((4, 1, 8, 8)).astype(np.float32), 6, axis=0)
    fs = FilterSettings(features=["pixel"])
    filt, info = filter_for_device(
        fs, stream, _Session(), FilterThreshold("pixel", 0.125, None, True)
    )
    assert filt is None and info["stands_aside"] is True
    # a model of 1 ns per input cannot pay for any comparison; one of 10 s always can
    filt, info = filter_for_device(fs, stream, _Session(), None, None, 1e-6)
    assert filt is None and info["stands_aside"] is True
    assert info["reason"].startswith("stands aside: skipping ")
    filt, info = filter_for_device(fs, stream, _Session(), None, None, 1e4)
    assert filt is not None and "stands_aside" not in info
    results = tmp_path / "results.json"
    row = {"threshold": {"feature": "pixel", "threshold": 0.1}, "stands_aside": True}
    results.write_text(
        json.dumps({"run_id": "r", "caching": {"filter": {"per_device": {"cam-0": row}}}})
    )
    assert threshold_from_results(results, "cam-0").stands_aside is True
    row["stands_aside"] = "yes"
    results.write_text(
        json.dumps({"run_id": "r", "caching": {"filter": {"per_device": {"cam-0": row}}}})
    )
    with pytest.raises(DataError, match="stands_aside: expected true or false"):
        threshold_from_results(results, "cam-0")


# ---------------------------------------------------------------------- relay + forwarding


def _backhaul(outage_from: float) -> PathLink:
    return PathLink(
        (
            LinkSpec(bandwidth_mbps=1000, rtt_ms=2),
            LinkSpec(
                bandwidth_mbps=100,
                rtt_ms=30,
                trace=[
                    TracePoint(t_s=0, bandwidth_mbps=100),
                    TracePoint(t_s=outage_from, bandwidth_mbps=0),
                ],
            ),
        )
    )


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += max(s, 0.0)


def test_edge_relays_to_cloud_and_forwards_results(digits_repo: Path, tmp_path: Path) -> None:
    """A device's cloud request goes through its edge server over the emulated backhaul
    (bottleneck 100 Mbit/s, RTT 2 + 30 ms); results stored at the edge reach the cloud's
    sink once; during the backhaul outage the edge answers 502 and the device runs locally."""
    tokens = Tokens(
        devices={"kiosk-0": "k" * 20},
        nodes={"micro-2": "n" * 20},
        operators={"op": "o" * 20},
    )
    repo = ModelRepository(digits_repo)
    cloud_app = build_app(repo, tokens=tokens, sink_path=tmp_path / "cloud.db", node="cloud")
    clock = Clock()
    to_cloud = MemoryTransport(cloud_app)
    backhaul = LinkEmulator(to_cloud, _backhaul(100.0), clock=clock, sleep=clock.sleep)
    edge_app = build_app(
        repo,
        tokens=tokens,
        sink_path=tmp_path / "edge.db",
        node="micro-2",
        upstream=backhaul,
        upstream_name="cloud",
        upstream_token="n" * 20,
    )
    edge = MemoryTransport(edge_app)
    try:
        with DeviceStore(tmp_path / "dev.db") as store:
            agent = DeviceAgent(
                "kiosk-0",
                DeviceStream(sample_digits(30, seed=2), np.arange(30) % 10, 0.0),
                repo.get("digits").session,
                store,
                edge,
                model="digits",
                plan=StaticPlan(ExecutionTier.CLOUD, target="cloud"),
                token="k" * 20,
                server_node="micro-2",
                clock=clock,
                sleep=clock.sleep,
            )
            x = agent.stream.inputs[0]
            out, placement, _ = agent.infer(x)
            assert placement == "cloud"
            np.testing.assert_allclose(out, agent._local(x), rtol=1e-5, atol=1e-6)
            # 2 + 30 ms RTT, transfer at 100 Mbit/s both ways on the emulated clock
            assert backhaul.stats.delay_s == pytest.approx(
                0.032 + 8 * (backhaul.stats.bytes_up + backhaul.stats.bytes_down) / 100e6
            )
            clock.t = 150.0  # the backhaul is down: 502 from the edge, local fallback
            out, placement, _ = agent.infer(x)
            assert placement == "device_fallback"
            assert backhaul.stats.outages == 1
            clock.t = 0.0  # link back; an agent on the wall clock runs the stream
            agent = DeviceAgent(
                "kiosk-0",
                agent.stream,
                agent.session,
                store,
                edge,
                model="digits",
                plan=StaticPlan(ExecutionTier.CLOUD, target="cloud"),
                token="k" * 20,
                server_node="micro-2",
            )
            stats = agent.run(limit=30, drain_timeout_s=10.0)
            assert stats.placements.get("cloud", 0) == 30
        edge_sink = edge_app.state.server.sink
        cloud_sink = cloud_app.state.server.sink
        for _ in range(200):
            # the edge marks a batch forwarded once the cloud's answer is back
            if cloud_sink.counts().get("kiosk-0", 0) == 30 and not edge_sink.pending_upstream():
                break
            time.sleep(0.05)
        assert edge_sink.counts() == {"kiosk-0": 30}
        assert cloud_sink.keys("kiosk-0") == [f"kiosk-0:{i}" for i in range(30)]
        assert edge_sink.pending_upstream() == 0
        op = {"Authorization": "Bearer " + "o" * 20}
        stats_edge = edge.send(_get("/v2/stats", op))
        links = json.loads(stats_edge.body)["links"]["upstream"]
        assert links["bytes_up"] > 0 and links["failures"] >= 1
    finally:
        edge.close()


def _get(path: str, headers: dict[str, str]) -> object:
    from edgeintel.runtime.transport import Request

    return Request("GET", path, b"", headers)


def test_relay_and_results_need_the_right_token(digits_repo: Path, tmp_path: Path) -> None:
    tokens = Tokens(devices={"a": "a" * 20, "b": "b" * 20}, nodes={"micro-1": "n" * 20})
    app = build_app(ModelRepository(digits_repo), tokens=tokens, sink_path=tmp_path / "s.db")
    rec = [{"key": "b:0", "seq": 0, "t_s": 0.0, "payload": {}}]

    async def fn(c: httpx.AsyncClient) -> None:
        r = await c.post(
            "/v1/results",
            json={"device": "b", "records": rec},
            headers={"Authorization": "Bearer " + "a" * 20},
        )
        assert r.status_code == 401  # a device posts its own results only
        r = await c.post(
            "/v1/results",
            json={"device": "b", "records": rec},
            headers={"Authorization": "Bearer " + "n" * 20},
        )
        assert r.status_code == 200 and r.json()["accepted"] == 1  # a relaying node may
        body, hl = encode_request({"input": sample_digits(1)})
        r = await c.post(
            "/v2/models/digits/infer",
            content=body,
            headers={
                "Inference-Header-Content-Length": str(hl),
                "Authorization": "Bearer " + "a" * 20,
                "X-Edgeintel-Forward": "cloud",
            },
        )
        assert r.status_code == 404 and "no upstream" in r.json()["error"]

    asyncio.run(_with_app(app, fn))  # type: ignore[arg-type]


def test_head_session_from_repository_helper(tmp_path: Path) -> None:
    s = make_session(digits_onnx(tmp_path / "d.onnx"))
    assert s.get_inputs()[0].name == "input"


# ---------------------------------------------------------------------- adaptive plan


def _planner_setup(tmp_path: Path, device_speed: float) -> tuple[object, object, object, Path]:
    from edgeintel.offloading.graph import load_layer_graph
    from edgeintel.offloading.planner import OffloadPlanner
    from edgeintel.offloading.profiler import ModelProfile
    from edgeintel.offloading.settings import OffloadingSettings
    from edgeintel.scenario import parse_scenario
    from tests.conftest import tiny_scenario_dict

    raw = tiny_scenario_dict()
    raw["device_profiles"]["phone"]["compute_speed"] = device_speed
    raw["devices"][0]["link"] = {
        "bandwidth_mbps": 50,
        "rtt_ms": 10,
        "trace": [
            {"t_s": 0, "bandwidth_mbps": 50},
            {"t_s": 10, "bandwidth_mbps": 0},  # outage from 10 s to 20 s
            {"t_s": 20, "bandwidth_mbps": 50},
        ],
    }
    sc = parse_scenario(raw)
    onnx_path = digits_onnx(tmp_path / "d.onnx")
    graph = load_layer_graph(onnx_path)
    n = graph.num_nodes
    profile = ModelProfile("x", list(graph.names), [1.0] * n, float(n), float(n), 3, 5.0, 5.0)
    planner = OffloadPlanner(graph, profile, OffloadingSettings(hysteresis=0.2))
    return sc, planner, graph, onnx_path


def test_adaptive_plan_follows_the_link_trace_with_hysteresis(tmp_path: Path) -> None:
    """A slow device offloads; during its link's outage it runs locally from the first
    request; after the outage it offloads again; a failed target goes local at once."""
    from edgeintel.runtime.wiring import AdaptivePlan

    sc, planner, _, _ = _planner_setup(tmp_path, device_speed=0.001)  # 1 s per layer locally
    device = sc.expand_devices()[0]
    t = {"now": 0.0}
    plan = AdaptivePlan(planner, sc, device, lambda: t["now"], splits={})
    first = plan.decide()
    assert first.tier is ExecutionTier.EDGE and first.target == "micro-1"
    t["now"] = 12.0
    assert plan.decide().tier is ExecutionTier.DEVICE  # outage: local at once
    t["now"] = 25.0
    back = plan.decide()
    assert back.tier is not ExecutionTier.DEVICE
    assert plan.decide(frozenset({back.target})).target != back.target  # failed: move now
    assert [(s[0], s[2]) for s in plan.switches][:3] == [
        (0.0, first.label),
        (12.0, "local"),
        (25.0, back.label),
    ]
    assert plan.excluded >= {"phone-1", "phone-2", "phone-3"}  # no D2D in the runtime
    # a fast device never leaves local: the planner's costs, not a fixed tier
    sc2, planner2, _, _ = _planner_setup(tmp_path / "b", device_speed=1000.0)
    fast = AdaptivePlan(planner2, sc2, sc2.expand_devices()[0], lambda: 0.0, splits={})
    assert fast.decide().tier is ExecutionTier.DEVICE


def test_split_decision_runs_head_on_device_and_tail_on_server(tmp_path: Path) -> None:
    """A hybrid option of the planner, cut for real: the device runs the head, the server's
    tail model finishes it; the result equals the whole model run locally."""
    from edgeintel.offloading.split import split_model
    from edgeintel.runtime.seams import Decision
    from edgeintel.runtime.wiring import AdaptivePlan, SplitTail, mask_key

    sc, planner, graph, onnx_path = _planner_setup(tmp_path, device_speed=0.001)
    device = sc.expand_devices()[0]
    repo_root = tmp_path / "repo"
    add_model(repo_root, "model", onnx_path, 1)
    k = graph.num_nodes // 2
    mask = graph.prefix_mask(k)
    sm = split_model(onnx_path, graph, mask, tmp_path / "cut")
    assert sm.head_path and sm.tail_path
    add_model(repo_root, "model_tail", sm.tail_path, 1)
    splits = {mask_key(mask): SplitTail("model_tail", make_session(sm.head_path))}
    plan = AdaptivePlan(planner, sc, device, lambda: 0.0, splits=splits)
    hybrid = next(
        o
        for o in planner.options(sc, device, 0.0, plan.excluded)  # type: ignore[attr-defined]
        if o.tier == "d2e"
    )
    hybrid = type(hybrid)(**{**hybrid.__dict__, "tier": "hybrid", "mask": mask})
    decision = plan.decision(hybrid)
    assert decision.tail_model == "model_tail" and decision.head is not None

    class Fixed:
        def decide(self, unreachable: frozenset[str] = frozenset()) -> Decision:
            return decision

    app = build_app(ModelRepository(repo_root))
    transport = MemoryTransport(app)
    try:
        with DeviceStore(tmp_path / "d.db") as store:
            agent = DeviceAgent(
                device.name,
                DeviceStream(sample_digits(4), np.arange(4), 0.0),
                make_session(onnx_path),
                store,
                transport,
                plan=Fixed(),
                server_node="micro-1",
            )
            for x in agent.stream.inputs:
                out, placement, _ = agent.infer(x)
                assert placement == "split-edge"
                np.testing.assert_allclose(out, agent._local(x), rtol=1e-5, atol=1e-5)
    finally:
        transport.close()


def test_adaptive_plan_learns_measured_latency(tmp_path: Path) -> None:
    """An edge server much slower than planned (measured end to end by the agent) loses the
    device's requests once measured min_samples times; one slow sample is not enough."""
    from edgeintel.runtime.wiring import AdaptivePlan

    sc, planner, _, _ = _planner_setup(tmp_path, device_speed=0.001)
    plan = AdaptivePlan(planner, sc, sc.expand_devices()[0], lambda: 0.0, splits={})
    first = plan.decide()
    assert first.target == "micro-1"
    plan.observe_latency(first.label, 1e7)
    assert plan.decide().label == first.label  # a single sample does not move it
    plan.observe_latency(first.label, 1e7)
    plan.observe_latency(first.label, 1e7)
    assert plan.measured[first.label] == (pytest.approx(1e7), 3)
    moved = plan.decide()
    assert moved.label != first.label
    assert plan.switches[-1][1:3] == (first.label, moved.label)


def test_two_edge_servers_share_results_through_redis(digits_repo: Path) -> None:
    """``backend: redis``: an input computed at micro-1 is an exact hit at micro-2 (the
    caching component's RedisResultCache behind the same seam, built per model)."""
    pytest.importorskip("redis", reason="the 'redis' extra is not installed")
    from tests.caching.test_redis_cache import _start_redis, _stop

    proc, url = _start_redis()
    try:
        settings = ResultCacheSettings(backend="redis", redis_url=url)
        apps = {
            node: build_app(
                ModelRepository(digits_repo),
                cache=lambda model, version, node=node: server_cache(settings, node),
                features=input_features,
            )
            for node in ("micro-1", "micro-2")
        }
        x = sample_digits(1, seed=11)

        async def first(c: httpx.AsyncClient) -> None:
            assert (await _post(c, "digits", x)).status_code == 200

        async def second(c: httpx.AsyncClient) -> None:
            assert (await _post(c, "digits", x)).status_code == 200
            stats = (await c.get("/v2/stats")).json()
            assert stats["cache_hits_by_tier"] == {"exact": 1}

        asyncio.run(_with_app(apps["micro-1"], first))  # type: ignore[arg-type]
        asyncio.run(_with_app(apps["micro-2"], second))  # type: ignore[arg-type]
    finally:
        import redis

        client = redis.Redis.from_url(url)
        client.flushall()
        client.close()
        _stop(proc)


def test_node_config_leaves_out_a_cache_that_stands_aside(tmp_path: Path) -> None:
    """A server whose result cache stands aside (the caching stage's decision) is started
    without one; the others get the scenario's cache settings."""
    from edgeintel.runtime.nodes import node_setup, write_node_config
    from edgeintel.scenario import parse_scenario
    from tests.conftest import tiny_scenario_dict

    sc = parse_scenario(tiny_scenario_dict())
    on = write_node_config(tmp_path / "on.json", sc, "micro-1")
    off = write_node_config(tmp_path / "off.json", sc, "micro-1", cache=False)
    assert json.loads(on.read_text())["result_cache"] is not None
    assert json.loads(off.read_text())["result_cache"] is None
    assert node_setup(None, off, "micro-1", relays=False)[0] is None
