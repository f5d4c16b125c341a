"""Repository verification, dynamic batching, queue limits, auth, size limit, metrics and
graceful shutdown of the inference server."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from edgeintel.errors import ModelError
from edgeintel.runtime.auth import Tokens
from edgeintel.runtime.batching import DynamicBatcher, QueueFull
from edgeintel.runtime.protocol import decode_response, encode_request
from edgeintel.runtime.repository import ModelRepository, add_model
from edgeintel.runtime.server import build_app
from edgeintel.runtime.settings import BatchingSettings, ServerSettings
from tests.runtime.conftest import ServerProcess, digits_onnx, sample_digits


@pytest.fixture(scope="module")
def digits_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("digits_repo")
    add_model(root, "digits", digits_onnx(tmp_path_factory.mktemp("m") / "d.onnx"), 1)
    return root


def test_tampered_model_is_refused(digits_repo: Path, tmp_path: Path) -> None:
    root = tmp_path / "repo"
    shutil.copytree(digits_repo, root)
    shutil.copytree(root / "digits" / "1", root / "digits" / "2")
    manifest = json.loads((root / "digits" / "edgeintel.json").read_text())
    manifest["versions"]["2"] = manifest["versions"]["1"]
    (root / "digits" / "edgeintel.json").write_text(json.dumps(manifest))
    f = root / "digits" / "2" / "model.onnx"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit pattern in the last byte
    f.write_bytes(bytes(data))
    repo = ModelRepository(root)
    assert repo.versions("digits") == ["1"]
    assert "sha256" in repo.refused["digits/2"]
    with pytest.raises(KeyError, match="tampered"):
        repo.get("digits", "2")
    # a version without a recorded hash is refused too
    shutil.copytree(root / "digits" / "1", root / "digits" / "3")
    assert "no sha256" in ModelRepository(root).refused["digits/3"]


def test_missing_repository_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        ModelRepository(tmp_path / "nope")


def test_export_writes_triton_config(digits_repo: Path) -> None:
    cfg = (digits_repo / "digits" / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in cfg
    assert "max_batch_size: 32" in cfg
    assert "dims: [ 1, 8, 8 ]" in cfg and "TYPE_FP32" in cfg
    assert "max_queue_delay_microseconds: 2000" in cfg


def _run_concurrent(repo: Path, n: int, settings: BatchingSettings) -> tuple[list, int]:
    model = ModelRepository(repo).get("digits")
    x = sample_digits(n)

    async def main() -> tuple[list, int]:
        b = DynamicBatcher(model, settings)
        b.start()
        try:
            outs = await asyncio.gather(
                *(b.infer({"input": x[i : i + 1]}) for i in range(n)), return_exceptions=True
            )
        finally:
            await b.close()
        return list(outs), b.batches

    return asyncio.run(main())


def test_dynamic_batching_groups_requests_into_one_call(digits_repo: Path) -> None:
    n = 64
    outs, batches = _run_concurrent(
        digits_repo, n, BatchingSettings(max_batch_size=32, max_queue_delay_us=200_000)
    )
    assert batches == 2  # 64 concurrent rows, 32 per call
    want = ModelRepository(digits_repo).get("digits").session.run(None, {"input": sample_digits(n)})
    got = np.concatenate([o["logits"] for o in outs])
    np.testing.assert_allclose(got, want[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("adaptive", [True, False])
def test_adaptive_wait_does_not_delay_a_lone_client(digits_repo: Path, adaptive: bool) -> None:
    """A lone client's requests run at once with adaptive_wait; without it each waits out
    max_queue_delay_us (200 ms here). A burst still forms full batches."""
    import time

    model = ModelRepository(digits_repo).get("digits")
    x = sample_digits(64)
    settings = BatchingSettings(
        max_batch_size=32, max_queue_delay_us=200_000, adaptive_wait=adaptive
    )

    async def main() -> tuple[float, int]:
        b = DynamicBatcher(model, settings)
        b.start()
        try:
            await b.infer({"input": x[:1]})  # without adaptive_wait, the first waits too
            t0 = time.perf_counter()
            for i in range(5):  # one client: each request after the previous answer
                await b.infer({"input": x[i : i + 1]})
            lone = time.perf_counter() - t0
            before = b.batches
            await asyncio.gather(*(b.infer({"input": x[i : i + 1]}) for i in range(64)))
            return lone, b.batches - before
        finally:
            await b.close()

    lone, burst_batches = asyncio.run(main())
    if adaptive:
        assert lone < 0.2  # five requests, none waiting out the 200 ms delay
    else:
        assert lone >= 5 * 0.2
    assert burst_batches <= 3  # 64 concurrent rows in batches of up to 32


def test_batching_off_runs_one_call_per_request(digits_repo: Path) -> None:
    _, batches = _run_concurrent(digits_repo, 16, BatchingSettings(max_batch_size=1))
    assert batches == 16


def test_full_queue_refuses(digits_repo: Path) -> None:
    outs, _ = _run_concurrent(
        digits_repo,
        10,
        BatchingSettings(max_batch_size=64, max_queue_delay_us=100_000, queue_capacity=4),
    )
    assert sum(isinstance(o, QueueFull) for o in outs) == 6
    assert sum(isinstance(o, dict) for o in outs) == 4


async def _with_app(app, fn):
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await fn(c)


def test_503_when_queue_full_over_http(digits_repo: Path) -> None:
    settings = ServerSettings(
        batching=BatchingSettings(max_batch_size=64, max_queue_delay_us=200_000, queue_capacity=3)
    )
    app = build_app(ModelRepository(digits_repo), settings)
    body, hl = encode_request({"input": sample_digits(1)})
    headers = {"Inference-Header-Content-Length": str(hl)}

    async def fn(c: httpx.AsyncClient) -> list[int]:
        rs = await asyncio.gather(
            *(c.post("/v2/models/digits/infer", content=body, headers=headers) for _ in range(8))
        )
        assert all("error" in r.json() for r in rs if r.status_code == 503)
        return sorted(r.status_code for r in rs)

    assert asyncio.run(_with_app(app, fn)) == [200] * 3 + [503] * 5


def test_bearer_token_and_size_limit(digits_repo: Path) -> None:
    token = "t" * 32
    admin = "a" * 32
    app = build_app(
        ModelRepository(digits_repo),
        ServerSettings(max_request_bytes=2048),
        tokens=Tokens(devices={"phone-0": token}, operators={"admin": admin}),
    )
    body, hl = encode_request({"input": sample_digits(1)})
    h = {"Inference-Header-Content-Length": str(hl)}
    ok = {**h, "Authorization": f"Bearer {token}"}

    async def fn(c: httpx.AsyncClient) -> None:
        url = "/v2/models/digits/infer"
        assert (await c.post(url, content=body, headers=h)).status_code == 401
        bad = {**h, "Authorization": "Bearer " + "x" * 32}
        r = await c.post(url, content=body, headers=bad)
        assert r.status_code == 401 and "token" in r.json()["error"]
        assert (await c.get("/v2/models/digits")).status_code == 401
        assert (await c.post(url, content=body, headers=ok)).status_code == 200
        assert (await c.get("/v2/health/live")).status_code == 200  # health stays open
        big, bhl = encode_request({"input": sample_digits(8)})  # 2 KiB of floats + header
        r = await c.post(
            url, content=big, headers={**ok, "Inference-Header-Content-Length": str(bhl)}
        )
        assert r.status_code == 413 and "exceeds" in r.json()["error"]
        # operations need an operator's token: none, a device's, a wrong one -> 401
        for path in ("/metrics", "/v2/stats", "/dashboard"):
            assert (await c.get(path)).status_code == 401
            r = await c.get(path, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401 and "operator" in r.json()["error"]
        assert (await c.get("/dashboard?token=" + "x" * 32)).status_code == 401
        assert (await c.get("/v2/health/ready")).status_code == 200
        op = {"Authorization": f"Bearer {admin}"}
        assert (await c.get("/v2/stats", headers=op)).json()["requests"] >= 1
        page = await c.get("/dashboard?token=" + admin)  # the page keeps it in a cookie
        assert page.status_code == 200 and "edgeintel node" in page.text
        assert (await c.get("/v2/stats")).status_code == 200  # the page's polls: cookie
        c.cookies.clear()
        assert (await c.get("/v2/stats")).status_code == 401
        assert (
            await c.get("/metrics", headers={"Cookie": f"edgeintel_token={admin}"})
        ).status_code == 401
        metrics = (await c.get("/metrics", headers=op)).text
        assert 'edgeintel_device_requests_total{device="phone-0"}' in metrics
        assert 'edgeintel_requests_total{endpoint="infer",model="digits",status="401"}' in metrics
        assert "edgeintel_batch_size_count" in metrics

    asyncio.run(_with_app(app, fn))


def test_results_ingest_is_idempotent(digits_repo: Path, tmp_path: Path) -> None:
    app = build_app(ModelRepository(digits_repo), sink_path=tmp_path / "sink.db")
    recs = [{"key": f"d:{i}", "seq": i, "t_s": 0.1 * i, "payload": {"label": i}} for i in range(5)]

    async def fn(c: httpx.AsyncClient) -> None:
        r = await c.post("/v1/results", json={"device": "d", "records": recs[:3]})
        assert r.json() == {"accepted": 3, "duplicates": 0}
        r = await c.post("/v1/results", json={"device": "d", "records": recs})
        assert r.json() == {"accepted": 2, "duplicates": 3}
        r = await c.post("/v1/results", json={"device": "d", "records": [{"key": 1}]})
        assert r.status_code == 400

    asyncio.run(_with_app(app, fn))


@pytest.mark.slow
def test_graceful_shutdown_finishes_in_flight(digits_repo: Path, tmp_path: Path) -> None:
    srv = ServerProcess(
        digits_repo,
        tmp_path,
        "--max-batch-size",
        "64",
        "--max-queue-delay-us",
        "3000000",
        "--no-adaptive-wait",  # the fixed wait keeps all 4 requests queued when SIGTERM arrives
    )
    body, hl = encode_request({"input": sample_digits(1)})
    results: list[int] = []

    def call() -> None:
        r = httpx.post(
            f"http://{srv.url}/v2/models/digits/infer",
            content=body,
            headers={"Inference-Header-Content-Length": str(hl)},
            timeout=30,
        )
        results.append(r.status_code)
        decode_response(r.content, int(r.headers["Inference-Header-Content-Length"]))

    try:
        srv.start()
        threads = [threading.Thread(target=call) for _ in range(4)]
        for t in threads:
            t.start()
        # requests wait 3 s in the batcher; SIGTERM arrives once all 4 are queued
        import time

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            stats = httpx.get(f"http://{srv.url}/v2/stats").json()
            if stats["queue_depth"] == 4:
                break
            time.sleep(0.02)
        assert stats["queue_depth"] == 4
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(30)
        # uvicorn re-raises SIGTERM after its graceful exit
        assert srv.proc.wait(30) in (0, -signal.SIGTERM)
    finally:
        srv.stop()
    assert results == [200] * 4
    assert '"event": "serve.stopped"' in srv.log.read_text()


class DictCache:
    """A minimal exact result cache standing in for edgeintel.caching's (seam test)."""

    def __init__(self) -> None:
        self.store: dict[str, dict[str, np.ndarray]] = {}

    def get(self, key: str, features: np.ndarray | None = None) -> dict[str, np.ndarray] | None:
        return self.store.get(key)

    def put(
        self, key: str, outputs: dict[str, np.ndarray], features: np.ndarray | None = None
    ) -> None:
        self.store[key] = outputs


def test_result_cache_seam_serves_repeats_without_inference(digits_repo: Path) -> None:
    cache = DictCache()
    app = build_app(ModelRepository(digits_repo), cache=cache)
    x = sample_digits(2)
    same, hl = encode_request({"input": x[:1]})
    other, hl2 = encode_request({"input": x[1:]})

    async def fn(c: httpx.AsyncClient) -> None:
        url = "/v2/models/digits/infer"
        outs = []
        for body, h in ((same, hl), (same, hl), (other, hl2), (same, hl)):
            r = await c.post(url, content=body, headers={"Inference-Header-Content-Length": str(h)})
            assert r.status_code == 200
            outs.append(
                decode_response(r.content, int(r.headers["Inference-Header-Content-Length"]))
            )
        np.testing.assert_array_equal(outs[0]["logits"], outs[1]["logits"])
        assert len(cache.store) == 2
        stats = (await c.get("/v2/stats")).json()
        assert stats["cache_hit_ratio"] == 0.5 and stats["batches"] == 2  # 2 ORT calls for 4
        assert stats["cache_hits_by_tier"] == {"exact": 2}
        metrics = (await c.get("/metrics")).text
        assert 'edgeintel_cache_hits_total{model="digits",tier="exact"} 2.0' in metrics

    asyncio.run(_with_app(app, fn))
