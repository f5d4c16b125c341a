"""Encryption at rest of a device's store-and-forward queue (AES-256-GCM).

A run keeps one store secret (32 random bytes, ``<run>/runtime/keys/store.key``,
0600); each device's key is derived from it with HKDF-SHA256 and the device's name
(``device_key``), so one device's key opens no other device's backlog. A stored
record is sealed as ``aesgcm1:<base64(nonce || ciphertext+tag)>`` with a fresh
96-bit nonce and the record's idempotency key as associated data: a ciphertext
moved to another row, flipped bits or a wrong key all fail authentication
(``StoreCorrupt``) instead of yielding a wrong result. Nothing here is hand-rolled:
``cryptography``'s AESGCM and HKDF do the work.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from edgeintel.errors import ConfigError, StoreCorrupt

__all__ = [
    "SEALED_PREFIX",
    "STORE_SECRET_BYTES",
    "RecordCipher",
    "device_key",
    "generate_store_secret",
    "load_store_secret",
]

STORE_SECRET_BYTES = 32  # AES-256
SEALED_PREFIX = "aesgcm1:"
_AAD = b"edgeintel-store/v1\0"
_NONCE = 12


def generate_store_secret(path: str | Path) -> Path:
    """Write a fresh store secret (32 random bytes) to ``path``, mode 0600."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(os.urandom(STORE_SECRET_BYTES))
    out.chmod(0o600)
    return out


def load_store_secret(path: str | Path, option: str = "--store-key") -> bytes:
    """The secret in ``path``; ``ConfigError`` (one line naming ``option``) otherwise."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{option} {p}: cannot read it ({exc.strerror or exc})") from None
    if len(data) != STORE_SECRET_BYTES:
        raise ConfigError(
            f"{option} {p}: expected a {STORE_SECRET_BYTES}-byte key file (as `edgeintel run` "
            f"writes in runtime/keys/store.key), got {len(data)} bytes"
        )
    return data


def device_key(secret: bytes, device: str) -> bytes:
    """The 32-byte AES key of ``device``'s store, derived from the run's secret."""
    return HKDF(
        algorithm=hashes.SHA256(),
        length=STORE_SECRET_BYTES,
        salt=None,
        info=b"edgeintel device store v1|" + device.encode(),
    ).derive(secret)


class RecordCipher:
    """Seals and opens a store's records with one device's key; ``where`` (the store's
    path) goes into error messages."""

    def __init__(self, key: bytes, where: str) -> None:
        if len(key) != STORE_SECRET_BYTES:
            raise ConfigError(f"{where}: expected a {STORE_SECRET_BYTES}-byte store key")
        self._aead = AESGCM(key)
        self.where = where

    def seal(self, record_key: str, plaintext: bytes) -> str:
        """``aesgcm1:`` + base64 of nonce and ciphertext, bound to ``record_key``."""
        nonce = os.urandom(_NONCE)
        ct = self._aead.encrypt(nonce, plaintext, _AAD + record_key.encode())
        return SEALED_PREFIX + base64.b64encode(nonce + ct).decode("ascii")

    def open(self, record_key: str, sealed: str) -> bytes:
        """The plaintext of ``sealed``; ``StoreCorrupt`` when it is not a sealed record,
        was altered, belongs to another row or was sealed with another key."""
        if not sealed.startswith(SEALED_PREFIX):
            raise StoreCorrupt(
                f"{self.where}: record {record_key!r} is not encrypted in an encrypted store"
            )
        try:
            raw = base64.b64decode(sealed[len(SEALED_PREFIX) :], validate=True)
            return self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], _AAD + record_key.encode())
        except (InvalidTag, ValueError):
            raise StoreCorrupt(
                f"{self.where}: record {record_key!r} fails authentication (tampered with, "
                "or sealed with another device's key)"
            ) from None
