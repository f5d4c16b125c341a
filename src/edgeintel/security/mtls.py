"""Mutual TLS on the HTTP server: who is on each connection, and revocation.

uvicorn verifies the client's certificate against the CA during the handshake (the
server's ``ssl.SSLContext`` requires one). ``mtls_protocol`` adds what the handshake
cannot: a client whose certificate serial the CA's CRL lists (``Revocations``,
re-read when the file changes) is disconnected as its connection opens, and every
request carries the certificate's identity in the ASGI scope's ``tls`` extension
(``client_cert_name``, ``edgeintel_role``) so handlers can hold a device to its own
name (``peer_identity``). The gRPC face gets the same revocation check per call
(``grpc_revocation_interceptor``): grpc's TLS verifies the chain but knows no CRL.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping
from typing import Any

from edgeintel.security.pki import Identity, Revocations, Role, identity_of

__all__ = ["grpc_peer", "grpc_revocation_interceptor", "mtls_protocol", "peer_identity"]

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


def grpc_revocation_interceptor(revocations: Revocations) -> Any:
    """A ``grpc.aio.ServerInterceptor`` refusing (UNAUTHENTICATED) each call whose client
    certificate the CRL lists, or that came without one, before the method runs."""
    import grpc

    async def check(context: Any) -> None:
        peer = grpc_peer(context)
        if peer is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "client certificate required")
            return
        if revocations.revoked(peer.serial):
            log.info(json.dumps({"event": "tls.revoked", "peer": peer.name, "serial": peer.serial}))
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, f"certificate of {peer.name!r} is revoked"
            )

    class RevocationInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
        async def intercept_service(self, continuation: Any, details: Any) -> Any:
            handler = await continuation(details)
            if handler is None:
                return None
            if handler.unary_unary is not None:
                inner = handler.unary_unary

                async def unary(request: Any, context: Any) -> Any:
                    await check(context)
                    return await inner(request, context)

                return grpc.unary_unary_rpc_method_handler(
                    unary, handler.request_deserializer, handler.response_serializer
                )
            if handler.stream_stream is not None:
                inner_stream = handler.stream_stream

                async def stream(requests: Any, context: Any) -> Any:
                    await check(context)
                    async for response in inner_stream(requests, context):
                        yield response

                return grpc.stream_stream_rpc_method_handler(
                    stream, handler.request_deserializer, handler.response_serializer
                )
            return handler  # the service has no other kinds of method

    return RevocationInterceptor()
