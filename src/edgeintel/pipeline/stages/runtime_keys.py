"""The deployment's keys and certificates, for the ``runtime`` stage: device, node and
operator tokens, the mutual-TLS certificates issued from the scenario's CA, and the Ed25519
key that signs the run's model files, whose public half the servers and agents verify
against."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from edgeintel.errors import EdgeIntelError
from edgeintel.pipeline.core import RunContext

__all__ = ["deployment_tokens", "issue_pki", "signing_key", "verified_session", "verify_key"]


def deployment_tokens(path: str | Path | None, devices: list[str], sc: Any) -> Any:
    """The deployment's tokens: the shared file when given, else fresh ones for every
    device, every node (relaying results upstream) and one operator."""
    from edgeintel.runtime.auth import Tokens, load_tokens

    if path is not None:
        table = load_tokens(path)
        assert table is not None
        missing = [d for d in devices if d not in table.devices]
        if missing:
            raise EdgeIntelError(
                f"settings.runtime.deploy.tokens_file {path}: no token for "
                f"{', '.join(missing[:3])}{'...' if len(missing) > 3 else ''}"
            )
        return table
    nodes = [sc.cloud.name, *(e.name for e in sc.edge_servers)]
    return Tokens(
        devices={d: secrets.token_urlsafe(24) for d in devices},
        nodes={n: secrets.token_urlsafe(24) for n in nodes},
        operators={"operator": secrets.token_urlsafe(24)},
    )


def issue_pki(
    ctx: RunContext, folder: Path, where: dict[str, tuple[str, int]], devices: list[str]
) -> Any:
    """The deployment's certificates (``security.pki.issue_deployment``) in
    ``<run>/runtime/pki``: one per node started here (valid for the host it listens at),
    one per device agent started here, and the operator's; from ``deploy.tls_ca`` or a
    fresh scenario CA."""
    import socket

    from edgeintel.runtime.settings import DEVICES
    from edgeintel.security.pki import issue_deployment

    dep = ctx.scenario.settings.runtime.deploy
    hosts = {
        name: (socket.gethostname(),) if h in ("0.0.0.0", "::", "") else (h,)
        for name, (h, _) in where.items()
        if dep.starts(name)
    }
    agents = devices if dep.starts(DEVICES) else []
    pki = issue_deployment(folder / "pki", hosts, agents, dep.tls_ca)
    ctx.log(f"runtime: mutual TLS, {pki.certificates} certificates issued by {pki.ca}")
    return pki


def verify_key(folder: Path) -> Path:
    """The run's public signing key (PEM), which servers and agents verify against."""
    return folder / "keys" / "signing.pub"


def signing_key(user_key: Path | None, folder: Path) -> Any:
    """The run's Ed25519 signing key: the user's (``deploy.signing_key``) or a fresh one
    kept 0600 in ``<run>/runtime/keys``; its public half written to ``_verify_key``."""
    from cryptography.hazmat.primitives import serialization

    from edgeintel.security.signing import generate_signing_key, load_signing_key

    keys = folder / "keys"
    if user_key is None:
        generate_signing_key(keys / "signing.key")
        (keys / "signing.key.pub").replace(verify_key(folder))
        return load_signing_key(keys / "signing.key")
    key = load_signing_key(user_key)
    keys.mkdir(parents=True, exist_ok=True)
    verify_key(folder).write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key


def verified_session(path: Path, folder: Path) -> Any:
    """An ONNX Runtime session of ``path`` once its signature checks (``ModelError``
    otherwise): what a device agent loads."""
    from edgeintel.onnx_files import make_session
    from edgeintel.security.signing import ArtifactVerifier

    ArtifactVerifier(verify_key(folder))(path)
    return make_session(path)
