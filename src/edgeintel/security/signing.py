"""Signed model artifacts: Ed25519 detached signatures beside every model file.

A repository's manifest records each file's sha256, but whoever can rewrite the file
can rewrite the manifest too. A signature by a key the writer of the file cannot
reach closes that gap: ``sign_file(path, key)`` writes ``<path>.sig`` (one line,
``ed25519:<base64 signature>``) over ``DOMAIN + sha256(file bytes)``, and
``verify_file(path, public_key)`` refuses, with one line, a file with no signature,
an unreadable one, or one that does not match (tampered content, or signed by another
key). Servers (``ModelRepository(verify=...)``) and device agents run the check before
ONNX Runtime opens the file.

Keys are PEM files: the private key (PKCS#8, written 0600) and its public key beside
it (``<key>.pub``). A run generates its own pair unless the user names one
(``deploy.signing_key``); ``edgeintel serve --verify-key`` / ``device --verify-key``
take the public key (a private key file is accepted too; its public half is used).
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from edgeintel.errors import ConfigError, ModelError

__all__ = [
    "DOMAIN",
    "SIGNATURE_SUFFIX",
    "ArtifactVerifier",
    "generate_signing_key",
    "load_signing_key",
    "load_verify_key",
    "sign_file",
    "signature_path",
    "verify_file",
]

SIGNATURE_SUFFIX = ".sig"
DOMAIN = b"edgeintel-artifact-v1\0"  # a signature of a model file is never valid elsewhere
_PREFIX = "ed25519:"


def signature_path(path: str | Path) -> Path:
    """Where the detached signature of ``path`` lives: ``<path>.sig``."""
    p = Path(path)
    return p.with_name(p.name + SIGNATURE_SUFFIX)


def _message(path: Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return DOMAIN + h.digest()


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` readable by its owner only (0600 from creation, not chmod after)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    path.chmod(0o600)


def generate_signing_key(path: str | Path) -> Path:
    """A fresh Ed25519 key at ``path`` (PEM, 0600) and its public key at ``<path>.pub``;
    returns the public key's path."""
    p = Path(path)
    key = Ed25519PrivateKey.generate()
    _write_private(
        p,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    pub = p.with_name(p.name + ".pub")
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return pub


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot read ({exc.strerror or exc})") from None


def load_signing_key(path: str | Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in PEM file ``path``; ``ConfigError`` (one line) otherwise."""
    p = Path(path)
    data = _read(p, "signing key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigError(
            f"signing key {p}: not an unencrypted PEM private key (expected an Ed25519 key, "
            "e.g. from `openssl genpkey -algorithm ed25519`)"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"signing key {p}: a {type(key).__name__}; expected an Ed25519 key")
    return key


def load_verify_key(path: str | Path) -> Ed25519PublicKey:
    """The Ed25519 public key in PEM file ``path`` (a private key file gives its public
    half); ``ConfigError`` (one line) otherwise."""
    p = Path(path)
    data = _read(p, "verify key")
    if b"PRIVATE KEY" in data:
        return load_signing_key(p).public_key()
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigError(
            f"verify key {p}: not a PEM public key (expected the Ed25519 key's .pub file)"
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"verify key {p}: a {type(key).__name__}; expected an Ed25519 key")
    return key


def sign_file(path: str | Path, key: Ed25519PrivateKey) -> Path:
    """Write the detached signature of ``path``'s bytes beside it; returns its path."""
    p = Path(path)
    sig = key.sign(_message(p))
    out = signature_path(p)
    out.write_text(_PREFIX + base64.b64encode(sig).decode("ascii") + "\n")
    return out


def verify_file(path: str | Path, key: Ed25519PublicKey) -> None:
    """``ModelError`` (one line naming the file) unless ``path`` carries a valid signature
    by ``key`` over its current bytes."""
    p = Path(path)
    sig_path = signature_path(p)
    if not sig_path.is_file():
        raise ModelError(f"{p}: unsigned (no {sig_path.name} beside it); refused")
    text = sig_path.read_text(encoding="ascii", errors="replace").strip()
    try:
        if not text.startswith(_PREFIX):
            raise ValueError(text[:20])
        sig = base64.b64decode(text[len(_PREFIX) :], validate=True)
    except ValueError:
        raise ModelError(
            f"{sig_path}: not an edgeintel signature ('{_PREFIX}<base64>'); refused"
        ) from None
    try:
        key.verify(sig, _message(p))
    except InvalidSignature:
        raise ModelError(
            f"{p}: signature does not match (tampered, or signed by another key); refused"
        ) from None


class ArtifactVerifier:
    """``verify(path)`` for ``ModelRepository`` and agents: ``verify_file`` against one
    public key (loaded once, from ``key`` or the PEM file it names)."""

    def __init__(self, key: Ed25519PublicKey | str | Path) -> None:
        self.key = key if isinstance(key, Ed25519PublicKey) else load_verify_key(key)

    def __call__(self, path: Path) -> None:
        verify_file(path, self.key)
