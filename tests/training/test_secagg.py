"""Secure aggregation: exact mask cancellation, privacy of single updates, dropout recovery."""

from __future__ import annotations

import numpy as np
import pytest

from edgeintel.errors import ConfigError, DataError
from edgeintel.training.secagg import (
    SecAggClient,
    SecAggConfig,
    SecAggServer,
    decode_fixed_point,
    encode_fixed_point,
    secure_aggregate,
    secure_sum,
)


def _vectors(n: int, dim: int, seed: int = 0) -> list[np.ndarray]:
    return list(np.random.default_rng(seed).normal(0, 1, size=(n, dim)))


def test_fixed_point_round_trip_and_ring_wrap() -> None:
    x = np.array([1.5, -2.25, 0.0, 1e-3])
    enc = encode_fixed_point(x, 16)
    assert enc.dtype == np.uint64
    np.testing.assert_array_equal(decode_fixed_point(enc, 16), np.rint(x * 2**16) / 2**16)
    # A huge additive mask and its negation cancel exactly mod 2^64.
    mask = np.array([2**64 - 5, 2**63 + 7, 12345, 2**64 - 1], dtype=np.uint64)
    np.testing.assert_array_equal((enc + mask) - mask, enc)
    with pytest.raises(DataError, match="overflows"):
        encode_fixed_point(np.array([2.0**40]), 24)
    with pytest.raises(DataError, match="NaN"):
        encode_fixed_point(np.array([np.nan]), 24)


def test_masks_cancel_bit_for_bit() -> None:
    vecs = _vectors(6, 50)
    res = secure_sum(vecs, SecAggConfig(scale_bits=24))
    exact = sum(encode_fixed_point(v, 24, 6) for v in vecs)  # ring sum of the encodings
    np.testing.assert_array_equal(res.total, decode_fixed_point(exact, 24))
    np.testing.assert_allclose(res.total, np.sum(vecs, axis=0), atol=6 * 2.0**-24)
    assert res.survivors == tuple(range(6)) and res.dropped == ()


def test_single_masked_update_reveals_nothing() -> None:
    n, dim, cfg, session = 4, 4000, SecAggConfig(), b"s" * 16
    vecs = _vectors(n, dim, seed=1)
    clients = [SecAggClient(i, n, cfg, session) for i in range(n)]
    server = SecAggServer(n, dim, cfg, session)
    for i, c in enumerate(clients):
        server.public_keys[i] = c.advertise()
    relay: dict[int, dict[int, bytes]] = {i: {} for i in range(n)}
    for i, c in enumerate(clients):
        for v, blob in c.share_keys(dict(server.public_keys)).items():
            relay[v][i] = blob
    for i, c in enumerate(clients):
        c.receive_shares(relay[i])
    masked = [c.masked_input(v) for c, v in zip(clients, vecs, strict=True)]
    for y, x in zip(masked, vecs, strict=True):
        seen = decode_fixed_point(y, cfg.scale_bits)
        # What the server sees is spread over the whole ring and uncorrelated with the input.
        assert np.median(np.abs(seen - x)) > 1e9
        assert abs(np.corrcoef(seen, x)[0, 1]) < 0.1
    # Even all but one masked input together do not give the partial sum.
    partial = decode_fixed_point(sum(masked[:3]), cfg.scale_bits)
    assert np.median(np.abs(partial - np.sum(vecs[:3], axis=0))) > 1e9
    # A survivor never hands out both shares of one device.
    with pytest.raises(DataError, match="both shares"):
        clients[0].unmask([0, 1, 2], [2, 3])
    for i, y in enumerate(masked):
        server.receive_masked(i, y)
    responses = {i: c.unmask(range(n), []) for i, c in enumerate(clients)}
    total = decode_fixed_point(server.unmasked_sum(responses), cfg.scale_bits)
    np.testing.assert_allclose(total, np.sum(vecs, axis=0), atol=n * 2.0**-24)


@pytest.mark.parametrize("dropped", [[2], [0, 5], [6]])
def test_dropout_recovery_gives_the_survivors_sum(dropped: list[int]) -> None:
    vecs = _vectors(7, 30, seed=2)
    res = secure_sum(vecs, SecAggConfig(threshold=0.5), dropped=dropped)
    keep = [v for i, v in enumerate(vecs) if i not in dropped]
    exact = sum(encode_fixed_point(v, 24, 7) for v in keep)
    np.testing.assert_array_equal(res.total, decode_fixed_point(exact, 24))
    assert res.dropped == tuple(dropped)


def test_too_many_dropouts_is_an_error() -> None:
    with pytest.raises(DataError, match="needs shares from 4 of 6"):
        secure_sum(_vectors(6, 5), SecAggConfig(threshold=0.5), dropped=[0, 1, 2])


def test_weighted_aggregate_over_arrays() -> None:
    rng = np.random.default_rng(3)
    ups = [[rng.normal(size=(3, 2)), rng.normal(size=4)] for _ in range(5)]
    w = [10.0, 20.0, 5.0, 1.0, 4.0]
    total, wsum, res = secure_aggregate(ups, w, dropped=[3])
    keep = [0, 1, 2, 4]
    assert wsum == pytest.approx(39.0)
    for k in range(2):
        ref = sum(w[i] * ups[i][k] for i in keep)
        np.testing.assert_allclose(total[k], ref, atol=1e-5)
        assert total[k].shape == ups[0][k].shape
    assert res.bytes_up > res.plain_bytes_up


def test_wrong_length_masked_update() -> None:
    server = SecAggServer(3, 10, SecAggConfig(), b"x" * 16)
    server.public_keys[0] = (b"a" * 32, b"b" * 32)
    with pytest.raises(DataError, match="length 9; expected 10"):
        server.receive_masked(0, np.zeros(9, dtype=np.uint64))
    with pytest.raises(DataError, match="uint64"):
        server.receive_masked(0, np.zeros(10, dtype=np.float32))
    with pytest.raises(DataError, match="did not take part"):
        server.receive_masked(1, np.zeros(10, dtype=np.uint64))


def test_bad_config_and_inputs() -> None:
    with pytest.raises(ConfigError, match="scale_bits"):
        SecAggConfig(scale_bits=60)
    with pytest.raises(ConfigError, match="threshold"):
        SecAggConfig(threshold=1.0)
    with pytest.raises(ConfigError, match="at least 2 devices"):
        secure_sum([np.zeros(3)])
    with pytest.raises(DataError, match="device 1 has 2 values"):
        secure_sum([np.zeros(3), np.zeros(2)])


def _session(
    n: int, dim: int, cfg: SecAggConfig, session: bytes = b"s" * 16
) -> tuple[list[SecAggClient], SecAggServer]:
    """Keys advertised and shares exchanged, as in rounds 0 and 1 of the protocol."""
    clients = [SecAggClient(i, n, cfg, session) for i in range(n)]
    server = SecAggServer(n, dim, cfg, session)
    for i, c in enumerate(clients):
        server.public_keys[i] = c.advertise()
    all_s = server.all_s_keys()
    relay: dict[int, dict[int, bytes]] = {i: {} for i in range(n)}
    for i, c in enumerate(clients):
        for v, blob in c.share_keys(server.keys_for(i), all_s).items():
            relay[v][i] = blob
    for i, c in enumerate(clients):
        c.receive_shares(relay[i])
    return clients, server


def test_neighbor_graph_is_k_regular_symmetric_and_key_random() -> None:
    from edgeintel.training.secagg import graph_seed, neighbor_graph

    keys = [bytes([i]) * 32 for i in range(20)]
    seed = graph_seed(b"s1", keys)
    g = neighbor_graph(20, 4, seed)
    assert all(len(nb) == 4 and u not in nb for u, nb in enumerate(g))
    assert all(u in g[v] for u, nb in enumerate(g) for v in nb)  # symmetric
    assert neighbor_graph(20, 4, graph_seed(b"s1", keys)) == g  # deterministic
    # one device's key changes the whole graph: the server cannot fix it alone
    other = [*keys[:7], b"\xff" * 32, *keys[8:]]
    assert neighbor_graph(20, 4, graph_seed(b"s1", other)) != g
    assert neighbor_graph(5, None, b"")[2] == (0, 1, 3, 4)  # complete graph
    assert neighbor_graph(5, 4, b"")[2] == (0, 1, 3, 4)  # k >= n - 1 is complete too


def test_devices_refuse_a_neighbour_set_the_keys_do_not_determine() -> None:
    n, cfg = 12, SecAggConfig(neighbors=4)
    clients = [SecAggClient(i, n, cfg, b"g" * 16) for i in range(n)]
    server = SecAggServer(n, 10, cfg, b"g" * 16)
    for i, c in enumerate(clients):
        server.public_keys[i] = c.advertise()
    all_s = server.all_s_keys()
    honest = server.keys_for(0)
    clients[0].share_keys(honest, all_s)  # the honest graph is accepted
    # a server that picks device 0's neighbours itself (e.g. devices it controls)
    chosen = [v for v in range(1, n) if v not in honest][:4]
    forged = {v: server.public_keys[v] for v in (0, *chosen)}
    fresh = SecAggClient(0, n, cfg, b"g" * 16)
    fresh._c, fresh._s = clients[0]._c, clients[0]._s  # same device, same keys
    with pytest.raises(DataError, match="neighbour set is not the one"):
        fresh.share_keys(forged, all_s)
    with pytest.raises(DataError, match="needs all 12 advertised keys"):
        fresh.share_keys(honest)


def test_server_falsely_reporting_a_live_device_dropped_learns_nothing() -> None:
    """Bonawitz et al.'s self-mask: the server may learn b_u or s_u of a device, never both."""
    from edgeintel.training import secagg

    n, dim, cfg = 5, 2000, SecAggConfig(threshold=0.5)
    vecs = _vectors(n, dim, seed=9)

    def attack() -> np.ndarray:
        clients, server = _session(n, dim, cfg)
        masked = [c.masked_input(v) for c, v in zip(clients, vecs, strict=True)]
        victim = 2  # sent its masked input, i.e. alive
        others = [i for i in range(n) if i != victim]
        # the server tells everyone else that the victim dropped: they return s-shares
        responses = {i: clients[i].unmask(others, [victim]) for i in others}
        holders = server.holders(victim)
        shares = [(j + 1, responses[v][victim]) for j, v in enumerate(holders) if v in responses]
        s_priv = secagg._s_key(secagg.shamir_combine(shares[: cfg.t(n)]))
        y = masked[victim].copy()
        for v in server.holders(victim):
            if v == victim:
                continue
            m = secagg._pair_mask(s_priv, server.public_keys[v][1], server.session, dim)
            y = y - m if victim < v else y + m
        # a second request, now naming the victim as a survivor to get b-shares, is refused
        with pytest.raises(DataError, match="already answered"):
            clients[0].unmask(range(n), [])
        return decode_fixed_point(y, cfg.scale_bits)

    recovered = attack()
    # the pairwise masks are gone but the self-mask PRG(b_u) still hides the input
    assert np.median(np.abs(recovered - vecs[2])) > 1e9
    assert abs(np.corrcoef(recovered, vecs[2])[0, 1]) < 0.1
    # control: without self-masks the very same attack recovers the input exactly
    orig = secagg._self_mask
    try:
        secagg._self_mask = lambda seed, session, d, dtype=np.uint64: np.zeros(d, dtype)  # type: ignore[assignment]
        leaked = attack()
    finally:
        secagg._self_mask = orig  # type: ignore[assignment]
    np.testing.assert_allclose(leaked, vecs[2], atol=2.0**-20)


@pytest.mark.parametrize("dropped", [(), (3,), (0, 7, 11)])
def test_sparse_secagg_sum_is_exact_with_dropouts(dropped: tuple[int, ...]) -> None:
    vecs = _vectors(16, 40, seed=5)
    cfg = SecAggConfig(scale_bits=24, neighbors=6)
    res = secure_sum(vecs, cfg, dropped=dropped)
    expect = sum(encode_fixed_point(v, 24) for i, v in enumerate(vecs) if i not in dropped)
    np.testing.assert_array_equal(res.total, decode_fixed_point(expect, 24))
    # sparse sharing sends far fewer bytes than the complete graph
    full = secure_sum(vecs, SecAggConfig(scale_bits=24), dropped=dropped)
    np.testing.assert_array_equal(full.total, res.total)
    assert res.bytes_up < full.bytes_up and res.bytes_down < full.bytes_down


def test_sparse_single_masked_update_reveals_nothing() -> None:
    vecs = _vectors(12, 400, seed=6)
    cfg = SecAggConfig(neighbors=4)
    clients, _ = _session(12, 400, cfg)
    y = decode_fixed_point(clients[0].masked_input(vecs[0]), cfg.scale_bits)
    assert abs(np.corrcoef(y, vecs[0])[0, 1]) < 0.2


def test_sparse_too_many_dropped_neighbours_is_an_error() -> None:
    cfg = SecAggConfig(neighbors=2)
    vecs = _vectors(10, 5)
    clients, server = _session(10, 5, cfg)
    # drop device 0 and both of its neighbours: nobody holds 2 of its 3 shares
    dropped = {0, *server.graph[0]}
    survivors = [i for i in range(10) if i not in dropped]
    for i in survivors:
        server.receive_masked(i, clients[i].masked_input(vecs[i]))
    responses = {i: clients[i].unmask(survivors, sorted(dropped)) for i in survivors}
    with pytest.raises(DataError, match="needs shares from 2 of 3 share holders of device 0"):
        server.unmasked_sum(responses)


def test_neighbors_must_be_even() -> None:
    with pytest.raises(ConfigError, match=r"secagg\.neighbors must be an even number >= 2"):
        SecAggConfig(neighbors=3)


@pytest.mark.parametrize("ring_bits", [32, 64])
def test_secagg_plus_exact_on_hand_sized_inputs_with_dropouts(ring_bits: int) -> None:
    """8 devices, k = 4 neighbours, 2 dropouts: the survivors' sum comes out exact."""
    vecs = [np.array([i, -2.5 * i, 0.25, 1000.0 - i]) for i in range(8)]
    cfg = SecAggConfig(scale_bits=12, neighbors=4, ring_bits=ring_bits)
    res = secure_sum(vecs, cfg, dropped=[1, 6])
    expect = sum(v for i, v in enumerate(vecs) if i not in (1, 6))
    np.testing.assert_array_equal(res.total, expect)  # multiples of 2^-12: no rounding
    assert res.survivors == (0, 2, 3, 4, 5, 7)
    # a masked vector is ring_bits / 8 bytes per value
    assert res.bytes_up > 6 * 4 * ring_bits // 8
    with pytest.raises(DataError, match=f"{ring_bits}-bit ring"):
        secure_sum([np.array([2.0**ring_bits])] * 3, cfg)


def test_shamir_any_t_shares_reconstruct_fewer_do_not() -> None:
    from edgeintel.training.secagg import shamir_combine, shamir_split

    secret = bytes(range(16))
    shares = shamir_split(3, 5, secret)
    assert all(len(s) == 17 for s in shares)
    for pick in ([0, 1, 2], [4, 2, 0], [1, 3, 4]):
        assert shamir_combine([(j + 1, shares[j]) for j in pick]) == secret
    # t - 1 shares give a uniform field element: almost surely not a 16-byte value at all
    try:
        assert shamir_combine([(1, shares[0]), (2, shares[1])]) != secret
    except DataError as exc:
        assert "16-byte secret" in str(exc)
    with pytest.raises(DataError, match="distinct"):
        shamir_combine([(1, shares[0]), (1, shares[0]), (2, shares[1])])


def test_ring_bits_checked() -> None:
    with pytest.raises(ConfigError, match="ring_bits"):
        SecAggConfig(ring_bits=16)
    with pytest.raises(ConfigError, match="scale_bits"):
        SecAggConfig(ring_bits=32, scale_bits=30)
