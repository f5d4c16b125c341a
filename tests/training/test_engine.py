"""The federated engine on real digits: determinism, exact bytes, rejection, deadlines, resume."""

from __future__ import annotations

import copy
import logging
import math

import numpy as np
import pytest
import torch

from edgeintel.data import load_dataset, partition, train_test_split
from edgeintel.errors import ConfigError, DataError
from edgeintel.models import build_model
from edgeintel.training import (
    TIERS,
    ClientSpec,
    FederatedConfig,
    FederatedEngine,
    FlMode,
    Hop,
    Strategy,
    Tier,
)
from edgeintel.training.aggregate import AggregationConfig
from edgeintel.training.compressors import CompressorConfig, TopK
from edgeintel.training.server_opt import Algorithm, ServerOptConfig
from edgeintel.training.weights import flatten, get_weights

N_DEV = 8


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, ...]:
    ds = load_dataset("digits")
    tr, te = train_test_split(ds.y, 0.25, seed=0)
    return ds.x[tr], ds.y[tr], ds.x[te], ds.y[te]


def _clients(n: int = N_DEV) -> list[ClientSpec]:
    # two edge servers: edge-a one hop from the cloud, edge-b two hops
    return [ClientSpec(f"d{i}", "edge-a" if i % 2 == 0 else "edge-b") for i in range(n)]


PATHS = {"edge-a": [Hop(1000.0, 2.0)], "edge-b": [Hop(1000.0, 2.0), Hop(500.0, 10.0)]}


def _engine(
    digits: tuple[np.ndarray, ...],
    family: str = "mlp",
    parts: list[np.ndarray] | None = None,
    clients: list[ClientSpec] | None = None,
    strategy: Strategy | None = None,
    **cfg: object,
) -> FederatedEngine:
    x, y, xt, yt = digits
    parts = parts if parts is not None else partition(y, N_DEV, "dirichlet", 0, alpha=0.5)
    model = build_model(family, x.shape[1:], 10, width=4, seed=0)
    config = FederatedConfig(**{"rounds": 3, "local_steps": 3, "batch_size": 16, **cfg})  # type: ignore[arg-type]
    return FederatedEngine(
        model, x, y, parts, clients or _clients(), xt, yt, config, 10, PATHS, strategy
    )


def test_same_seed_same_model_and_training_helps(digits: tuple[np.ndarray, ...]) -> None:
    topk = CompressorConfig(name="topk", ratio=0.1)
    a, b, c = (_engine(digits, "image_cnn", rounds=2, seed=s, compressor=topk) for s in (3, 3, 4))
    a.run(), b.run(), c.run()
    np.testing.assert_array_equal(a.state.weights, b.state.weights)
    assert not np.array_equal(a.state.weights, c.state.weights)
    plain = _engine(digits, rounds=15, local_steps=5, lr=0.3)
    plain.run()
    assert plain.state.history[-1].accuracy > 0.6  # 10 classes: chance is 0.1


def test_local_training_matches_a_plain_sgd_step(digits: tuple[np.ndarray, ...]) -> None:
    x, y, _, _ = digits
    parts = [np.arange(16), np.arange(16, 40)]
    eng = _engine(digits, parts=parts, clients=_clients(2), rounds=1, local_steps=1, lr=0.1)
    ref = copy.deepcopy(eng.model)
    eng.run()
    ref.train()
    # client 0 holds exactly one batch: its step is order-invariant
    loss = torch.nn.functional.cross_entropy(
        ref(torch.from_numpy(x[:16])), torch.from_numpy(y[:16])
    )
    loss.backward()
    with torch.no_grad():
        for p in ref.parameters():
            p -= 0.1 * p.grad  # type: ignore[operator]
    expected = flatten(get_weights(ref))
    fresh = _engine(digits, parts=parts, clients=_clients(2), rounds=1, local_steps=1, lr=0.1)
    batches = fresh._batches(0, 1, 0, 1)[None]
    assert sorted(batches.ravel().tolist()) == list(range(16))
    out = fresh.trainer.train(fresh.state.weights[None], batches, np.ones((1, 1), np.float32))[0]
    np.testing.assert_allclose(out, expected, atol=1e-6)
    # the engine's round = weighted mean of both clients' SGD results
    assert not np.allclose(eng.state.weights, fresh.state.weights)


def test_bytes_per_tier_equal_payload_sizes(digits: tuple[np.ndarray, ...]) -> None:
    eng = _engine(digits, rounds=2, compressor=CompressorConfig(name="topk", ratio=0.05))
    eng.run()
    d = eng.dim
    k = math.ceil(0.05 * d)
    blob = k * (2 + 4)
    assert len(TopK(0.05).encode(np.ones(d, np.float32))) == blob
    for rec in eng.state.history:
        assert set(rec.bytes) == set(TIERS)
        assert rec.bytes["device_to_edge"] == N_DEV * blob
        assert rec.bytes["edge_to_device"] == N_DEV * 4 * d
        # relayed per hop: 4 devices behind edge-a (1 hop), 4 behind edge-b (2 hops)
        assert rec.bytes["edge_to_cloud"] == (4 * 1 + 4 * 2) * blob
        assert rec.bytes["cloud_to_edge"] == (1 + 2) * 4 * d


def test_hierarchical_bytes_and_equivalence_with_flat(digits: tuple[np.ndarray, ...]) -> None:
    hier = _engine(digits, mode=FlMode.HIERARCHICAL, k2=3, rounds=2)
    hier.run()
    d = hier.dim
    for rec in hier.state.history:
        assert rec.bytes["edge_to_cloud"] == (1 + 2) * 4 * d  # one model per edge per hop
        assert rec.bytes["device_to_edge"] == 3 * N_DEV * 4 * d
    # with k2 = 1 and full participation, HierFAVG is FedAvg
    flat = _engine(digits, rounds=2)
    one = _engine(digits, mode=FlMode.HIERARCHICAL, k2=1, rounds=2)
    flat.run(), one.run()
    np.testing.assert_allclose(flat.state.weights, one.state.weights, atol=1e-5)


class _Poison(Strategy):
    def client_update(self, update: np.ndarray, client: ClientSpec, round: int) -> np.ndarray:
        return np.full_like(update, np.nan) if client.name in ("d1", "d2") else update


def test_nan_updates_are_rejected_and_counted(
    digits: tuple[np.ndarray, ...], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        eng = _engine(digits, rounds=2, strategy=_Poison())
        eng.run()
    for rec in eng.state.history:
        assert rec.rejected == 2 and rec.aggregated == N_DEV - 2
    assert np.isfinite(eng.state.weights).all()
    assert "holds NaN/inf" in caplog.text


def test_device_without_data_is_left_out(
    digits: tuple[np.ndarray, ...], caplog: pytest.LogCaptureFixture
) -> None:
    parts = [*partition(digits[1], N_DEV - 1, "iid", 0), np.empty(0, dtype=np.int64)]
    with caplog.at_level(logging.WARNING):
        eng = _engine(digits, parts=parts, rounds=1)
    assert eng.no_data == ["d7"] and "d7 has no training data" in caplog.text
    eng.run()
    assert eng.state.history[0].sampled == N_DEV - 1
    with pytest.raises(DataError, match="no device has training data"):
        _engine(digits, parts=[np.empty(0, dtype=np.int64)] * N_DEV)


def test_deadline_cuts_stragglers_and_dropouts(digits: tuple[np.ndarray, ...]) -> None:
    clients = _clients()
    clients[3] = ClientSpec("d3", "edge-b", compute_speed=0.001)  # 1000x slower
    eng = _engine(digits, clients=clients, rounds=2, step_ms=5.0, deadline_s=1.0)
    eng.run()
    for rec in eng.state.history:
        assert rec.stragglers == 1 and rec.aggregated == N_DEV - 1
        assert rec.duration_s == pytest.approx(1.0)
    q = _engine(digits, clients=clients, rounds=1, step_ms=5.0, deadline_quantile=0.5)
    q.run()
    # a flat round's deadline is at the cloud: edge-b's devices (odd) are 20 ms further
    # away over the backhaul than edge-a's, so at the median d3 and edge-b's 3 others miss it
    assert q.state.history[0].stragglers == 4
    times = [q._exchange(i, Tier.FLAT).time_s for i in range(N_DEV)]
    assert max(times[0::2]) < q._deadline < min(times[1::2])
    hier = _engine(digits, clients=clients, rounds=1, step_ms=5.0, deadline_quantile=0.5,
                   mode=FlMode.HIERARCHICAL)  # fmt: skip
    hier.run()  # at the edge servers only d3 is late (the backhaul is not on the device's path)
    assert hier.state.history[0].stragglers == 1
    drop = _engine(digits, rounds=3, dropout=0.5, clients_per_round=6)
    drop.run()
    for rec in drop.state.history:
        assert rec.sampled == 6 and rec.dropped + rec.aggregated == 6
    assert sum(r.dropped for r in drop.state.history) > 0


def test_round_time_counts_the_backhaul_in_flat_and_hierarchical_rounds(
    digits: tuple[np.ndarray, ...],
) -> None:
    """Hand-computed: a device's exchange, plus (flat) its edge's backhaul to the cloud."""
    flat = _engine(digits, rounds=1, step_ms=5.0, local_steps=3)
    flat.run()
    model_b, up_b = 4 * flat.dim, 4 * flat.dim  # dense updates (no compressor)

    def hop_s(n: int, bw_mbps: float, rtt_ms: float) -> float:
        return rtt_ms / 1000 + 8 * n / (bw_mbps * 1e6)

    access = hop_s(model_b, 20.0, 10.0) + 3 * 5.0 / 1000 + hop_s(up_b, 20.0, 10.0)
    # edge-b is two hops from the cloud: 1000 Mbit/s 2 ms, then 500 Mbit/s 10 ms
    backhaul_b = sum(hop_s(n, bw, rtt) for n in (model_b, up_b)
                     for bw, rtt in ((1000.0, 2.0), (500.0, 10.0)))  # fmt: skip
    assert flat.state.history[0].duration_s == pytest.approx(access + backhaul_b)
    hier = _engine(digits, rounds=1, step_ms=5.0, local_steps=3, mode=FlMode.HIERARCHICAL, k2=2)
    hier.run()
    edge_b = 2 * sum(hop_s(model_b, bw, rtt) for bw, rtt in ((1000.0, 2.0), (500.0, 10.0)))
    assert hier.state.history[0].duration_s == pytest.approx(2 * access + edge_b)


def test_resume_from_state_matches_an_uninterrupted_run(digits: tuple[np.ndarray, ...]) -> None:
    kw = {
        "rounds": 4,
        "compressor": CompressorConfig(name="topk", ratio=0.1),
        "server": ServerOptConfig(algorithm=Algorithm.FEDADAM, server_lr=0.01),
        "clients_per_round": 5,
    }
    full = _engine(digits, **kw)
    full.run()
    half = _engine(digits, **kw)
    half.run(rounds=2)
    saved = half.state_dict()
    assert saved["residuals"] and set(saved["server_state"]) == {"m", "v"}
    fresh = _engine(digits, **kw)
    fresh.load_state_dict(saved)
    fresh.run()
    np.testing.assert_array_equal(fresh.state.weights, full.state.weights)
    assert [r.to_json() for r in fresh.state.history] == [r.to_json() for r in full.state.history]


def test_algorithms_and_robust_rules_run(digits: tuple[np.ndarray, ...]) -> None:
    for algo, extra in [
        (Algorithm.FEDPROX, {"mu": 0.1}),
        (Algorithm.FEDAVGM, {}),
        (Algorithm.FEDADAM, {}),
    ]:
        lr = 0.01 if algo is Algorithm.FEDADAM else 1.0
        eng = _engine(
            digits, rounds=2, server=ServerOptConfig(algorithm=algo, server_lr=lr), **extra
        )
        eng.run()
        assert np.isfinite(eng.state.weights).all()
    eng = _engine(
        digits, rounds=1, aggregation=AggregationConfig(rule="krum"), byzantine_fraction=0.25
    )
    eng.run()
    with pytest.raises(ConfigError, match=r"2f\+2"):
        _engine(digits, rounds=1, aggregation=AggregationConfig(rule="krum", f=3)).run()


def test_bad_configs() -> None:
    with pytest.raises(ConfigError, match="fedprox needs mu"):
        FederatedConfig(server=ServerOptConfig(algorithm=Algorithm.FEDPROX))
    with pytest.raises(ConfigError, match="exactly one"):
        FederatedConfig(local_steps=None)
    with pytest.raises(ConfigError, match="deadline"):
        FederatedConfig(deadline_s=1.0, deadline_quantile=0.5)


def test_engine_feeds_the_error_feedback_residual_back(digits: tuple[np.ndarray, ...]) -> None:
    """One device whose local training always moves the weights by u = (2, 1.5, 0, ...);
    top-1 compression with error feedback, hand-computed:

    round 1: send top1(u) = (2, 0),        residual (0, 1.5),  global += (2, 0)
    round 2: u + residual = (2, 3) -> send (0, 3), residual (2, 0), global += (0, 3)
    so the global model moved by (2, 3). Without feeding the residual back it would
    have moved by (4, 0)."""
    x, y, xt, yt = digits
    model = build_model("mlp", x.shape[1:], 10, width=4, seed=0)
    w0 = flatten(get_weights(model))
    dim = w0.size
    cfg = FederatedConfig(
        rounds=2, local_steps=1, batch_size=8, eval_every=2,
        compressor=CompressorConfig(name="topk", ratio=1.0 / dim),
    )  # fmt: skip
    eng = FederatedEngine(
        model, x, y, [np.arange(len(y))], [ClientSpec("d0", "cloud")], xt, yt, cfg, 10
    )
    u = np.zeros(dim, np.float32)
    u[:2] = [2.0, 1.5]
    eng.trainer.train = lambda start, batches, mask: start + u  # type: ignore[method-assign]
    eng.run()
    moved = eng.state.weights - w0
    np.testing.assert_allclose(moved[:2], [2.0, 3.0], atol=1e-6)
    assert np.abs(moved[2:]).max() < 1e-6
    np.testing.assert_allclose(eng.state.residuals["d0"][:2], [2.0, 0.0], atol=1e-6)


def test_global_model_clamps_negative_batchnorm_variance() -> None:
    """DP noise can drive an averaged running variance below 0 (NaN in eval and export)."""
    from torch import nn as _nn

    from edgeintel.models.train import predict_logits

    model = _nn.Sequential(_nn.Flatten(), _nn.Linear(4, 3), _nn.BatchNorm1d(3), _nn.Linear(3, 2))
    x = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    y = np.arange(8) % 2
    eng = FederatedEngine(
        model, x, y, [np.arange(8)], [ClientSpec("d0", "cloud")], x, y, FederatedConfig(rounds=1)
    )
    names = [k for k, v in model.state_dict().items() if v.is_floating_point()]
    w = get_weights(model)
    w[names.index("2.running_var")][:] = [-0.5, 1.0, 2.0]
    eng.state.weights = flatten(w)
    out = eng.global_model()
    assert out[2].running_var.tolist() == [0.0, 1.0, 2.0]
    assert np.isfinite(predict_logits(out, x)).all()


def test_dgc_momentum_rides_in_the_checkpoint(digits: tuple[np.ndarray, ...]) -> None:
    """Top-k with DGC momentum: velocities are kept per device, checkpointed, and a run
    restored after round 1 ends exactly where an uninterrupted one does."""
    from edgeintel.training.private import engine_checkpoint, restore_engine

    dgc = CompressorConfig(name="topk", ratio=0.05, momentum=0.9)
    full = _engine(digits, rounds=2, compressor=dgc)
    full.run(1)
    assert set(full.state.momenta) == {c.name for c in _clients()}
    ckpt = engine_checkpoint(full)
    assert any(k.startswith("momentum/") for k in ckpt.arrays)
    full.run(2)
    resumed = _engine(digits, rounds=2, compressor=dgc)
    restore_engine(resumed, ckpt)
    resumed.run(2)
    np.testing.assert_array_equal(resumed.state.weights, full.state.weights)
    # and the momentum changes the result (it is not a no-op)
    plain = _engine(digits, rounds=2, compressor=CompressorConfig(name="topk", ratio=0.05))
    plain.run()
    assert not np.array_equal(plain.state.weights, full.state.weights)


def test_server_momentum_moves_parameters_and_averages_batchnorm_statistics(
    digits: tuple[np.ndarray, ...],
) -> None:
    """FedAvgM's momentum applies to parameters; BatchNorm running statistics take the
    clients' average (momentum on them sent the default scenario to 0.36 accuracy)."""
    server = ServerOptConfig(algorithm=Algorithm.FEDAVGM, server_lr=1.0, momentum=0.9)
    eng = _engine(digits, "image_cnn", server=server)
    stats = eng._stats
    assert stats.any() and not stats.all() and stats.shape == eng.state.weights.shape
    w0 = eng.state.weights.copy()
    d = np.full_like(w0, 0.5)
    eng._apply_server(d)
    eng._apply_server(d)
    # parameters: v1 = d, w1 = w0 + d; v2 = 0.9 d + d, w2 = w1 + 1.9 d = w0 + 2.9 d
    np.testing.assert_allclose(eng.state.weights[~stats], (w0 + 2.9 * d)[~stats], rtol=1e-6)
    # running statistics: each round's average, w0 + 2 d
    np.testing.assert_allclose(eng.state.weights[stats], (w0 + 2 * d)[stats], rtol=1e-6)
