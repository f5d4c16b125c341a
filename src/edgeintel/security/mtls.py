"""Mutual TLS on the HTTP server: who is on each connection, and revocation.

uvicorn verifies the client's certificate against the CA during the handshake (the
server's ``ssl.SSLContext`` requires one). ``mtls_protocol`` adds what the handshake
cannot: a client whose certificate serial the CA's CRL lists (``Revocations``,
re-read when the file changes) is disconnected as its connection opens, and every
request carries the certificate's identity in the ASGI scope's ``tls`` extension
(``client_cert_name``, ``edgeintel_role``) so handlers can hold a device to its own
name (``peer_identity``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from edgeintel.security.pki import Identity, Revocations, Role, identity_of

__all__ = ["mtls_protocol", "peer_identity"]

log = logging.getLogger("edgeintel.runtime.server")


def peer_identity(scope: Mapping[str, Any]) -> Identity | None:
    """The client certificate's identity of a request (None: not over mutual TLS)."""
    tls = (scope.get("extensions") or {}).get("tls") or {}
    name = tls.get("client_cert_name")
    if not isinstance(name, str):
        return None
    role = tls.get("edgeintel_role")
    return Identity(name, Role(role) if role else None, int(tls.get("edgeintel_serial", 0)))


def mtls_protocol(revocations: Revocations) -> type:
    """uvicorn's httptools protocol, refusing revoked clients and exposing identities."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class MutualTlsProtocol(HttpToolsProtocol):
        peer: Identity | None = None

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
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
