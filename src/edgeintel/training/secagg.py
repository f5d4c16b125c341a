"""Secure aggregation by pairwise masking (Bonawitz et al. 2017, CCS "Practical Secure
Aggregation for Privacy-Preserving Machine Learning"), honest-but-curious server.

Protocol per aggregation session (one edge server or the cloud with its devices):

0. *Advertise keys*: each device makes two X25519 key pairs, ``c`` (to encrypt
   secret shares to peers) and ``s`` (for pairwise masks; derived from a 16-byte
   seed so the seed can be secret-shared).
1. *Share keys*: each device draws a 16-byte self-mask seed ``b`` and splits ``b``
   and its ``s`` seed into ``n`` Shamir shares with threshold ``t`` (over the prime
   field GF(2^130 - 5), 17 bytes a share); share ``v`` is encrypted with AES-GCM under
   ``HKDF(X25519(c_u, c_v))`` and relayed by the server to device ``v``. Only seeds'
   shares travel: every mask is expanded locally from a seed (Bell et al. 2020).
2. *Masked input*: device ``u`` encodes its vector in fixed point in the ring
   Z_{2^R} (``round(x * 2^scale_bits)`` as uint32 or uint64 for ``ring_bits`` R = 32
   or 64; numpy's unsigned arithmetic wraps mod 2^R) and adds
   ``PRG(b_u) + sum_{v>u} PRG(s_uv) - sum_{v<u} PRG(s_uv)`` where
   ``s_uv = HKDF(X25519(s_u, s_v))`` and PRG is AES-256-CTR. A masked input is
   ``R / 8`` bytes per value: with R = 32, as many bytes as the float32 update.
3. *Unmasking*: the server names the survivors; each survivor returns its share of
   ``b_u`` for every survivor and of the ``s`` seed for every dropped device (never
   both for one device). With ``t`` shares the server removes the self-masks of
   survivors and the dangling pairwise masks of dropped devices; what is left is
   the exact ring sum of the survivors' encoded inputs.

Each survivor answers the unmasking request once per session, and never with both
shares of one device: a server that falsely reports a live device as dropped learns
its pairwise seed but not its self-mask ``b_u``, so the device's input stays hidden.

SecAgg+ (``neighbors=k``): the neighbour graph is a Harary graph over a relabelling
drawn from ``SHA-256(session || every device's public keys)``. Devices receive the
full list of advertised ``s`` keys (32 bytes each), recompute the graph and refuse a
neighbour set that differs, so the server cannot place chosen devices next to each
other without also choosing every device's key pair (it can still choose *which*
devices join a session).

Pairwise masks cancel bit for bit because ring addition is exact; the only
rounding is the fixed-point encoding (resolution ``2^-scale_bits`` per entry).
Values must satisfy ``n * max|x| < 2^(R - 1 - scale_bits)`` (checked).
"""

from __future__ import annotations

import hashlib
import math
import os
import struct
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from edgeintel.errors import ConfigError, DataError
from edgeintel.training.secagg_math import (
    RING_DTYPES,
    SHARE_BYTES,
    decode_fixed_point,
    encode_fixed_point,
    shamir_combine,
    shamir_split,
)

__all__ = [
    "SecAggClient",
    "SecAggConfig",
    "SecAggResult",
    "SecAggServer",
    "decode_fixed_point",
    "encode_fixed_point",
    "graph_seed",
    "neighbor_graph",
    "secure_aggregate",
    "secure_sum",
    "shamir_combine",
    "shamir_split",
]

_RAW = serialization.Encoding.Raw
_PUB = serialization.PublicFormat.Raw
_PRIV = serialization.PrivateFormat.Raw
_NOENC = serialization.NoEncryption()
_SHARE = struct.Struct(">II17s17s")  # sender, receiver, share of s seed, share of b


@dataclass(frozen=True)
class SecAggConfig:
    """``scale_bits``: fixed-point resolution 2^-scale_bits; ``threshold``: fraction of a
    device's share holders needed to reconstruct its secrets (t = floor(threshold * h) + 1);
    ``neighbors``: SecAgg+ degree k (Bell et al. 2020) — each device masks with and
    secret-shares to only k neighbours instead of all n - 1 peers; ``None`` = every pair;
    ``ring_bits``: 32 or 64, the ring Z_{2^ring_bits} of masked values (bytes per value
    sent: ring_bits / 8; ``n * max|x|`` must stay below ``2^(ring_bits - 1 - scale_bits)``)."""

    scale_bits: int = 24
    threshold: float = 0.5
    neighbors: int | None = None
    ring_bits: int = 64

    def __post_init__(self) -> None:
        if self.ring_bits not in RING_DTYPES:
            raise ConfigError(f"secagg.ring_bits must be 32 or 64, got {self.ring_bits}")
        if not 8 <= self.scale_bits <= min(48, self.ring_bits - 8):
            raise ConfigError(
                f"secagg.scale_bits must be in [8, {min(48, self.ring_bits - 8)}] for a "
                f"{self.ring_bits}-bit ring, got {self.scale_bits}"
            )
        if not 0 < self.threshold < 1:
            raise ConfigError(f"secagg.threshold must be in (0, 1), got {self.threshold}")
        if self.neighbors is not None and (self.neighbors < 2 or self.neighbors % 2):
            raise ConfigError(
                f"secagg.neighbors must be an even number >= 2 (or unset), got {self.neighbors}"
            )

    def t(self, n: int) -> int:
        """Shares needed to reconstruct, for a session of ``n`` devices."""
        return min(n, math.floor(self.threshold * n) + 1)


# --------------------------------------------------------------------------- ring encoding


def _hkdf(secret: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret)


_ZEROS: dict[int, bytes] = {}


def _prg(key: bytes, dim: int, dtype: type[np.unsignedinteger] = np.uint64) -> np.ndarray:
    """``dim`` uniform ring words: AES-256-CTR keystream under ``key`` (32 bytes)."""
    size = np.dtype(dtype).itemsize * dim
    zeros = _ZEROS.get(size)
    if zeros is None:  # a zero buffer per vector size (a few sizes per run)
        zeros = bytes(size)
        if len(_ZEROS) < 8:
            _ZEROS[size] = zeros
    enc = Cipher(algorithms.AES(key), modes.CTR(b"\x00" * 16)).encryptor()
    return np.frombuffer(enc.update(zeros), dtype=dtype)


def _s_key(seed: bytes) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(_hkdf(seed, b"edgeintel-secagg-s-key"))


def _pub(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(_RAW, _PUB)


def _pair_mask(
    priv: X25519PrivateKey,
    peer_pub: bytes,
    session: bytes,
    dim: int,
    dtype: type[np.unsignedinteger] = np.uint64,
) -> np.ndarray:
    shared = priv.exchange(X25519PublicKey.from_public_bytes(peer_pub))
    return _prg(_hkdf(shared, b"edgeintel-secagg-mask" + session), dim, dtype)


def _self_mask(
    b_seed: bytes, session: bytes, dim: int, dtype: type[np.unsignedinteger] = np.uint64
) -> np.ndarray:
    return _prg(_hkdf(b_seed, b"edgeintel-secagg-self" + session), dim, dtype)


def graph_seed(session: bytes, s_public_keys: Sequence[bytes]) -> bytes:
    """Seed of the SecAgg+ graph: SHA-256 of the session id and every device's ``s``
    public key in index order; no party can choose it alone once keys are fixed."""
    h = hashlib.sha256(b"edgeintel-secagg-graph" + session)
    for key in s_public_keys:
        if len(key) != 32:
            raise DataError(f"an X25519 public key has {len(key)} bytes; expected 32")
        h.update(key)
    return h.digest()


def _is_sparse(n: int, k: int | None) -> bool:
    return k is not None and k < n - 1


def neighbor_graph(n: int, k: int | None, seed: bytes) -> list[tuple[int, ...]]:
    """Each device's masking / share-holding neighbours.

    ``k=None`` (or ``k >= n - 1``): every other device, as in Bonawitz et al. Otherwise
    the Harary graph H(k, n) (each device linked to the k/2 nearest on either side of a
    ring) over a random relabelling of the devices derived from ``seed`` (see
    :func:`graph_seed`: a hash of all devices' public keys, so the server cannot choose
    who neighbours whom). The sum is exact for any graph; privacy against the server
    needs the survivors' induced graph to stay connected (Bell et al. 2020 take
    k = O(log n)).
    """
    return [_neighbors(n, k, seed, u) for u in range(n)]


def _neighbors(n: int, k: int | None, seed: bytes, u: int) -> tuple[int, ...]:
    """Row ``u`` of :func:`neighbor_graph` (what one device computes for itself)."""
    if not _is_sparse(n, k):
        return tuple(v for v in range(n) if v != u)
    assert k is not None
    seed_int = int.from_bytes(_hkdf(seed, b"edgeintel-secagg-graph", 8), "big")
    order = np.random.default_rng(seed_int).permutation(n)  # ring position -> device
    pos = int(np.flatnonzero(order == u)[0])
    half = k // 2
    return tuple(sorted({int(order[(pos + d) % n]) for d in range(-half, half + 1) if d}))


# --------------------------------------------------------------------------- parties


class SecAggClient:
    """One device's side of a session; ``index`` in ``0..n-1``."""

    def __init__(self, index: int, n: int, config: SecAggConfig, session: bytes) -> None:
        self.index, self.n, self.config, self.session = index, n, config, session
        self._c = X25519PrivateKey.generate()
        self._s_seed = os.urandom(16)
        self._s = _s_key(self._s_seed)
        self._b_seed = os.urandom(16)
        self._peers: dict[int, tuple[bytes, bytes]] = {}
        self._held: dict[int, tuple[bytes, bytes]] = {}  # sender -> (share of s, share of b)
        self._channels: dict[int, AESGCM] = {}  # one c-key agreement per peer, both ways
        self._answered = False

    def advertise(self) -> tuple[bytes, bytes]:
        """Round 0: public keys (c, s), 32 bytes each."""
        return _pub(self._c), _pub(self._s)

    def _channel(self, peer: int) -> AESGCM:
        ch = self._channels.get(peer)
        if ch is None:
            shared = self._c.exchange(X25519PublicKey.from_public_bytes(self._peers[peer][0]))
            key = _hkdf(shared, b"edgeintel-secagg-enc" + self.session)
            ch = self._channels[peer] = AESGCM(key)
        return ch

    def share_keys(
        self,
        public_keys: dict[int, tuple[bytes, bytes]],
        all_s_keys: Sequence[bytes] | None = None,
    ) -> dict[int, bytes]:
        """Round 1: encrypted Shamir shares of the s seed and b seed, one per peer.

        With a sparse SecAgg+ graph, ``all_s_keys`` (every device's advertised ``s`` key,
        in index order) must be given: the device recomputes the graph from them and
        refuses a neighbour set the keys do not determine.
        """
        if len(public_keys) < 2:
            raise ConfigError("secure aggregation needs at least 2 devices in a session")
        if public_keys.get(self.index) != self.advertise():
            raise DataError(f"device {self.index}: its own key is missing from the key list")
        if _is_sparse(self.n, self.config.neighbors):
            if all_s_keys is None or len(all_s_keys) != self.n:
                raise DataError(
                    f"device {self.index}: SecAgg+ needs all {self.n} advertised keys to "
                    "check its neighbours"
                )
            if all_s_keys[self.index] != self.advertise()[1]:
                raise DataError(f"device {self.index}: the key list misstates its own key")
            mine = _neighbors(
                self.n, self.config.neighbors, graph_seed(self.session, all_s_keys), self.index
            )
            if set(public_keys) != {self.index, *mine} or any(
                public_keys[v][1] != all_s_keys[v] for v in public_keys
            ):
                raise DataError(
                    f"device {self.index}: the server's neighbour set is not the one the "
                    "advertised keys determine"
                )
        self._peers = dict(public_keys)
        # the share holders are this device and its neighbours; holder j gets share j + 1
        holders = sorted(public_keys)
        t = self.config.t(len(holders))
        s_shares = shamir_split(t, len(holders), self._s_seed)
        b_shares = shamir_split(t, len(holders), self._b_seed)
        out: dict[int, bytes] = {}
        for j, v in enumerate(holders):
            payload = _SHARE.pack(self.index, v, s_shares[j], b_shares[j])
            if v == self.index:
                self._held[v] = (s_shares[j], b_shares[j])
                continue
            nonce = os.urandom(12)
            out[v] = nonce + self._channel(v).encrypt(nonce, payload, self.session)
        return out

    def receive_shares(self, ciphertexts: dict[int, bytes]) -> None:
        """Round 1 (receiving side): decrypt and keep the peers' shares."""
        for u, blob in ciphertexts.items():
            payload = self._channel(u).decrypt(blob[:12], blob[12:], self.session)
            sender, receiver, s_share, b_share = _SHARE.unpack(payload)
            if sender != u or receiver != self.index:
                raise DataError(f"device {self.index}: share from {u} is addressed wrongly")
            self._held[u] = (s_share, b_share)

    def masked_input(self, x: np.ndarray) -> np.ndarray:
        """Round 2: the encoded vector plus the self-mask and the signed pairwise masks."""
        cfg = self.config
        y = encode_fixed_point(np.ravel(x), cfg.scale_bits, self.n, cfg.ring_bits)
        y += _self_mask(self._b_seed, self.session, y.size, y.dtype.type)
        for v, (_, s_pub) in self._peers.items():
            if v == self.index:
                continue
            m = _pair_mask(self._s, s_pub, self.session, y.size, y.dtype.type)
            if self.index < v:
                y += m
            else:
                y -= m
        return y

    def unmask(self, survivors: Collection[int], dropped: Collection[int]) -> dict[int, bytes]:
        """Round 3: b-shares for survivors, s-shares for dropped devices (never both).

        Answered once per session: a second request (e.g. the same device first listed
        as a survivor, then as dropped) is refused.
        """
        if self._answered:
            raise DataError(f"device {self.index} already answered this session's unmasking")
        surv, drop = set(survivors), set(dropped)
        if surv & drop:
            raise DataError(
                f"device {self.index}: server asked for both shares of devices "
                f"{sorted(surv & drop)}"
            )
        if self.index not in surv:
            raise DataError(f"device {self.index} was declared dropped but asked to unmask")
        self._answered = True
        out: dict[int, bytes] = {}
        for u in surv & self._held.keys():
            out[u] = self._held[u][1]
        for u in drop & self._held.keys():
            out[u] = self._held[u][0]
        return out


@dataclass
class SecAggServer:
    """The aggregator's side: relays keys and shares, sums masked inputs, removes masks."""

    n: int
    dim: int
    config: SecAggConfig
    session: bytes
    public_keys: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)
    masked: dict[int, np.ndarray] = field(default_factory=dict)
    graph: list[tuple[int, ...]] = field(default_factory=list)

    def all_s_keys(self) -> list[bytes]:
        """Every device's advertised ``s`` key in index order (sent to devices in SecAgg+)."""
        if len(self.public_keys) != self.n:
            raise DataError(
                f"secure aggregation: {len(self.public_keys)} of {self.n} devices advertised keys"
            )
        return [self.public_keys[i][1] for i in range(self.n)]

    def _graph(self) -> list[tuple[int, ...]]:
        if not self.graph:
            seed = (
                graph_seed(self.session, self.all_s_keys())
                if _is_sparse(self.n, self.config.neighbors)
                else b""
            )
            self.graph = neighbor_graph(self.n, self.config.neighbors, seed)
        return self.graph

    def holders(self, u: int) -> list[int]:
        """Devices holding shares of ``u``'s secrets: ``u`` and its neighbours, sorted."""
        return sorted((u, *self._graph()[u]))

    def keys_for(self, u: int) -> dict[int, tuple[bytes, bytes]]:
        """The public keys device ``u`` receives: its own and its neighbours'."""
        return {v: self.public_keys[v] for v in self.holders(u)}

    def _combine(self, u: int, responses: dict[int, dict[int, bytes]]) -> bytes:
        """Reconstruct ``u``'s secret from the returned shares (at least ``t`` holders)."""
        holders = self.holders(u)
        t = self.config.t(len(holders))
        shares = [(j + 1, responses[v][u]) for j, v in enumerate(holders)
                  if u in responses.get(v, {})]  # fmt: skip
        if len(shares) < t:
            raise DataError(
                f"secure aggregation needs shares from {t} of {len(holders)} share holders "
                f"of device {u}, got {len(shares)}"
            )
        return shamir_combine(shares[:t])

    def receive_masked(self, index: int, y: np.ndarray) -> None:
        """Accept one device's masked vector; wrong length or dtype is rejected."""
        y = np.asarray(y)
        ring = RING_DTYPES[self.config.ring_bits]
        if y.dtype != ring or y.ndim != 1:
            raise DataError(
                f"device {index} sent a masked update of dtype {y.dtype} and shape {y.shape}; "
                f"expected a 1-D {np.dtype(ring).name} vector"
            )
        if y.size != self.dim:
            raise DataError(
                f"device {index} sent a masked update of length {y.size}; expected {self.dim}"
            )
        if index not in self.public_keys:
            raise DataError(f"device {index} did not take part in the key exchange")
        self.masked[index] = y

    def unmasked_sum(self, responses: dict[int, dict[int, bytes]]) -> np.ndarray:
        """Ring sum of the survivors' inputs from their round-3 shares."""
        survivors = sorted(self.masked)
        dropped = sorted(set(self.public_keys) - set(survivors))
        ring = RING_DTYPES[self.config.ring_bits]
        total = np.zeros(self.dim, dtype=ring)
        for y in self.masked.values():
            total += y
        for u in survivors:
            total -= _self_mask(self._combine(u, responses), self.session, self.dim, ring)
        masked = set(survivors)
        for u in dropped:
            s_priv = _s_key(self._combine(u, responses))
            if _pub(s_priv) != self.public_keys[u][1]:
                raise DataError(f"reconstructed key of dropped device {u} does not match")
            for v in self._graph()[u]:
                if v not in masked:
                    continue
                m = _pair_mask(s_priv, self.public_keys[v][1], self.session, self.dim, ring)
                # Survivor v added +m if v > u (u < v on u's side means u added +m, v added -m).
                if u < v:
                    total += m
                else:
                    total -= m
        return total


# --------------------------------------------------------------------------- one session


@dataclass(frozen=True)
class SecAggResult:
    """Sum of the survivors' vectors and what the protocol cost.

    Bytes are the serialized protocol messages (keys, encrypted shares, masked vectors,
    survivor list, unmasking shares); ``plain_bytes_up`` is what float32 updates would send.
    """

    total: np.ndarray
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]
    bytes_up: int
    bytes_down: int
    plain_bytes_up: int
    client_seconds: float
    server_seconds: float


def secure_sum(
    vectors: Sequence[np.ndarray],
    config: SecAggConfig = SecAggConfig(),
    dropped: Collection[int] = (),
    session: bytes | None = None,
) -> SecAggResult:
    """Run one in-process session over ``vectors`` (one 1-D float vector per device).

    Devices in ``dropped`` complete the key sharing but never send their masked input
    (they drop out after masking); the result is the sum over the others.
    """
    n = len(vectors)
    if n < 2:
        raise ConfigError(f"secure aggregation needs at least 2 devices in a session, got {n}")
    dim = int(np.size(vectors[0]))
    for i, vec in enumerate(vectors):
        if np.size(vec) != dim:
            raise DataError(f"device {i} has {np.size(vec)} values; expected {dim}")
    drop = set(dropped)
    if not drop <= set(range(n)):
        raise ConfigError(f"dropped devices {sorted(drop - set(range(n)))} are not in the session")
    session = session or os.urandom(16)
    cfg = config
    t_client = 0.0
    t0 = time.perf_counter()
    clients = [SecAggClient(i, n, cfg, session) for i in range(n)]
    server = SecAggServer(n, dim, cfg, session)
    up = down = 0
    for i, c in enumerate(clients):
        server.public_keys[i] = c.advertise()
        up += 64
    relay: dict[int, dict[int, bytes]] = {i: {} for i in range(n)}
    sparse = _is_sparse(n, cfg.neighbors)
    all_s = server.all_s_keys() if sparse else None
    for i, c in enumerate(clients):
        keys = server.keys_for(i)
        down += len(keys) * (4 + 64)  # each device gets its neighbours' keys
        if sparse:
            down += 32 * n  # ... and every s key, to check the graph
        for v, blob in c.share_keys(keys, all_s).items():
            relay[v][i] = blob
            up += 4 + len(blob)
            down += 4 + len(blob)
    for i, c in enumerate(clients):
        c.receive_shares(relay[i])
    t_client += time.perf_counter() - t0
    survivors = [i for i in range(n) if i not in drop]
    for i in survivors:
        t1 = time.perf_counter()
        y = clients[i].masked_input(vectors[i])
        t_client += time.perf_counter() - t1
        server.receive_masked(i, y)
        up += y.nbytes
    responses: dict[int, dict[int, bytes]] = {}
    t1 = time.perf_counter()
    for i in survivors:
        down += 4 * n
        responses[i] = clients[i].unmask(survivors, sorted(drop))
        up += (4 + SHARE_BYTES) * len(responses[i])
    t_client += time.perf_counter() - t1
    t2 = time.perf_counter()
    ring = server.unmasked_sum(responses)
    total = decode_fixed_point(ring, cfg.scale_bits)
    t_server = time.perf_counter() - t2
    return SecAggResult(
        total=total,
        survivors=tuple(survivors),
        dropped=tuple(sorted(drop)),
        bytes_up=up,
        bytes_down=down,
        plain_bytes_up=4 * dim * len(survivors),
        client_seconds=t_client,
        server_seconds=t_server,
    )


def secure_aggregate(
    updates: Sequence[Sequence[np.ndarray]],
    weights: Sequence[float],
    config: SecAggConfig = SecAggConfig(),
    dropped: Collection[int] = (),
) -> tuple[list[np.ndarray], float, SecAggResult]:
    """Weighted sum of updates (lists of arrays) via :func:`secure_sum`.

    Each device masks ``concat(w_u / w_max * x_u, [w_u / w_max])`` (weights scaled by the
    largest, which the aggregator knows, so values stay within the ring's range whatever
    the sample counts); returns (sum of w_u x_u as arrays, sum of surviving weights, the
    session result). Divide for the weighted mean.
    """
    if len(updates) != len(weights):
        raise ConfigError(f"{len(updates)} updates but {len(weights)} weights")
    if not updates:
        raise DataError("secure aggregation needs at least one update")
    shapes = [a.shape for a in updates[0]]
    w_max = max(float(w) for w in weights)
    if not w_max > 0:
        raise DataError(f"secure aggregation needs a positive weight, got {list(weights)}")
    vecs = []
    for i, (upd, w) in enumerate(zip(updates, weights, strict=True)):
        if [a.shape for a in upd] != shapes:
            raise DataError(f"update {i} has shapes {[a.shape for a in upd]}, expected {shapes}")
        flat = np.concatenate([np.ravel(a).astype(np.float64) for a in upd] + [np.zeros(1)])
        flat[:-1] *= w / w_max
        flat[-1] = w / w_max
        vecs.append(flat)
    res = secure_sum(vecs, config, dropped)
    total = res.total * w_max
    out, off = [], 0
    for s in shapes:
        size = int(np.prod(s, dtype=np.int64))
        out.append(total[off : off + size].reshape(s))
        off += size
    return out, float(total[-1]), res
