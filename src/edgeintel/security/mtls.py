"""Mutual TLS on the HTTP server: who is on each connection, and revocation.

uvicorn verifies the client's certificate against the CA during the handshake (the
server's ``ssl.SSLContext`` requires one). ``mtls_protocol`` adds what the handshake
cannot: a client whose certificate serial the CA's CRL lists (``Revocations``,
re-read when the file changes) is disconnected as its connection opens, and every
request carries the certificate's identity in the ASGI scope's ``tls`` extension
(``client_cert_name``, ``edgeintel_role``) so handlers can hold a device to its own
name (``peer_identity``). The gRPC face (the same TLS context on the event
loop, ``runtime.grpc_server``) gets the same revocation check per call (``grpc_refusal``,
before the method runs), from the client certificate its calls' context carries.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping
from typing import Any

from edgeintel.security.pki import Identity, Revocations, Role, identity_of

__all__ = ["grpc_peer", "grpc_refusal", "mtls_protocol", "peer_identity"]

log = logging.getLogger("edgeintel.runtime.server")


def peer_identity(scope: Mapping[str, Any]) -> Identity | None:
    """The client certificate's identity of a request (None: not over mutual TLS)."""
    tls = (scope.get("extensions") or {}).get("tls") or {}
    name = tls.get("client_cert_name")
    if not isinstance(name, str):
        return None
    role = tls.get("edgeintel_role")
    return Identity(name, Role(role) if role else None, int(tls.get("edgeintel_serial", 0)))


def mtls_protocol(revocations: Revocations, base: type | None = None) -> type:
    """A uvicorn HTTP protocol (``base``, by default uvicorn's httptools one) refusing
    revoked clients and exposing identities."""
    if base is None:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base

    class MutualTlsProtocol(base):  # type: ignore[misc,valid-type]
        peer: Identity | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            ssl_object = transport.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
            if der is None:  # the context requires a certificate; never serve without one
                transport.abort()
                return
            peer = identity_of(der)
            if revocations.revoked(peer.serial):
                log.info(
                    json.dumps({"event": "tls.revoked", "peer": peer.name, "serial": peer.serial})
                )
                transport.abort()
                return
            self.peer = peer

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self.peer is not None:
                self.scope["extensions"] = {
                    "tls": {
                        "client_cert_name": self.peer.name,
                        "edgeintel_role": str(self.peer.role) if self.peer.role else None,
                        "edgeintel_serial": self.peer.serial,
                    }
                }

    return MutualTlsProtocol


@functools.lru_cache(maxsize=4096)
def _pem_identity(pem: bytes) -> Identity:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    return identity_of(der)


def grpc_peer(context: Any) -> Identity | None:
    """The client certificate's identity of a gRPC call (None: not over mutual TLS)."""
    pems = (context.auth_context() or {}).get("x509_pem_cert") or []
    return _pem_identity(bytes(pems[0])) if pems else None


def grpc_refusal(context: Any, revocations: Revocations) -> str | None:
    """Why a gRPC call is refused before its method runs (None: it is not): no client
    certificate, or one whose serial the CRL lists (logged as ``tls.revoked``)."""
    peer = grpc_peer(context)
    if peer is None:
        return "client certificate required"
    if revocations.revoked(peer.serial):
        log.info(json.dumps({"event": "tls.revoked", "peer": peer.name, "serial": peer.serial}))
        return f"certificate of {peer.name!r} is revoked"
    return None
